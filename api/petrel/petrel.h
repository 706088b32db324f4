/*
 * petrel/petrel.h - the one header a module includes.
 */
#ifndef PETREL_PETREL_H
#define PETREL_PETREL_H

#include <petrel/version.h>
#include <petrel/host.h>
#include <petrel/module.h>

#endif
