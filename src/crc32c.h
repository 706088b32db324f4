/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum that seals queue files.
 *
 * Uses the SSE4.2 crc32 instruction when the CPU has it, a table
 * otherwise; both give the same values (crc32c("123456789") = 0xE3069283).
 */
#ifndef PETREL_CRC32C_H
#define PETREL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a checksum: start with crc = 0, feed the data in pieces. */
uint32_t crc32c(uint32_t crc, const void *data, size_t n);

#endif
