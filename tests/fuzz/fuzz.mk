# tests/fuzz/fuzz.mk - builds the libFuzzer harnesses (GNU make; run by
# 'make fuzz' in a configured build directory, which passes the compiler,
# the source directory and the libraries configure found).
#
# Everything here is compiled with $(FUZZ_CC) (clang) and
# -fsanitize=fuzzer,address,undefined whatever CC the build uses: the core
# sources (src/*.c except the programs main.c, sendmail.c, petrelctl.c, picked up by wildcard so a new core file
# needs no edit here) go into one archive, tests/fuzz/obj/libcore.a, and
# each harness tests/fuzz/fuzz_NAME.c links against it as
# tests/fuzz/fuzz-NAME.  The archive lets a harness define a core file's
# functions itself (fuzz_bounce.c includes src/bounce.c for its static
# compose()): the linker then takes no member that would clash.
#
# Objects go to tests/fuzz/obj/ in the build directory; 'make clean'
# removes them.

FUZZ_CC ?= clang
top_srcdir ?= .
S := $(top_srcdir)
O := tests/fuzz/obj

FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_OPT := -g -O1 -std=gnu11 -Wall -Wextra -Wno-unused-parameter
FUZZ_CPPFLAGS := -D_GNU_SOURCE -I$(S)/api -I$(S)/src -I$(S)/modules/maildir \
	-DPETREL_MODULEDIR='"/nonexistent"' -DFUZZ_MODULE_PATH='"$(FUZZ_MODULE_PATH)"' \
	$(LIBCONFIG_CFLAGS) $(OPENSSL_CFLAGS)
FUZZ_LIBS := $(LIBCONFIG_LIBS) $(OPENSSL_LIBS) $(LTDL_LIBS) $(CRYPT_LIBS) -pthread

CORE_SRCS := $(filter-out $(S)/src/main.c $(S)/src/sendmail.c $(S)/src/petrelctl.c,$(wildcard $(S)/src/*.c))
CORE_OBJS := $(patsubst $(S)/src/%.c,$(O)/%.o,$(CORE_SRCS))
CORE_HDRS := $(wildcard $(S)/src/*.h $(S)/api/petrel/*.h)

HARNESSES := smtp-parse mime msg-edit maildir-copy spool-envelope bounce smtp-reply session
BINS := $(patsubst %,tests/fuzz/fuzz-%,$(HARNESSES))

all: $(BINS)

$(O)/%.o: $(S)/src/%.c $(CORE_HDRS)
	@mkdir -p $(O)
	@echo "  FUZZCC   $@"
	@$(FUZZ_CC) $(FUZZ_OPT) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(FUZZ_CPPFLAGS) -c $< -o $@

$(O)/maildir_copy.o: $(S)/modules/maildir/maildir_copy.c $(S)/modules/maildir/maildir_copy.h
	@mkdir -p $(O)
	@echo "  FUZZCC   $@"
	@$(FUZZ_CC) $(FUZZ_OPT) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(FUZZ_CPPFLAGS) -c $< -o $@

$(O)/smtp_syntax.o: $(S)/modules/smtp/smtp_syntax.c $(S)/modules/smtp/smtp_syntax.h
	@mkdir -p $(O)
	@echo "  FUZZCC   $@"
	@$(FUZZ_CC) $(FUZZ_OPT) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(FUZZ_CPPFLAGS) -c $< -o $@

$(O)/libcore.a: $(CORE_OBJS)
	@rm -f $@
	@ar rcs $@ $(CORE_OBJS)

tests/fuzz/fuzz-maildir-copy: $(O)/maildir_copy.o
tests/fuzz/fuzz-bounce: $(S)/src/bounce.c
tests/fuzz/fuzz-smtp-reply: $(O)/smtp_syntax.o

# the harness fuzz-NAME is built from fuzz_NAME.c with '-' as '_'
.SECONDEXPANSION:
tests/fuzz/fuzz-%: $(S)/tests/fuzz/fuzz_$$(subst -,_,$$*).c $(S)/tests/fuzz/fuzz_common.h \
		$(O)/libcore.a $(CORE_HDRS)
	@echo "  FUZZLD   $@"
	@$(FUZZ_CC) $(FUZZ_OPT) $(FUZZ_SAN) -fsanitize=fuzzer $(FUZZ_CPPFLAGS) -o $@ \
		$< $(filter %.o,$^) $(O)/libcore.a $(FUZZ_LIBS)

.PHONY: all
