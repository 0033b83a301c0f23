// Error handling: every fatal error names the file, line, rank and role where it happened,
// says what went wrong and gives a hint, then ends the whole job (MPI_Abort when several
// ranks run) so that no rank is left hanging. User errors detected identically on every
// rank (a bad config) use die_user() instead, which exits with code 2 without an abort.
#pragma once
#include <stdarg.h>
#include <stddef.h>

// Who this process is; set once after the rank layout is known. Defaults: rank -1, "main".
void identity_set(int rank, const char *role);
int identity_rank(void);
const char *identity_role(void);

// Ends the job: prints "error [rank R role] file:line: message\n  hint: ..." and aborts.
__attribute__((noreturn, format(printf, 4, 5)))
void fatal_at(const char *file, int line, const char *hint, const char *fmt, ...);

// For a mistake in the user's input found the same way on every rank: rank 0 (or a
// single process) prints the message, every rank exits with status 2. No MPI_Abort noise.
__attribute__((noreturn, format(printf, 1, 2)))
void die_user(const char *fmt, ...);

#define FATAL(hint, ...) fatal_at(__FILE__, __LINE__, (hint), __VA_ARGS__)
#define CHECK(cond, hint, ...) do { if (!(cond)) FATAL((hint), __VA_ARGS__); } while (0)

// A failed C library call that set errno: the message gets strerror(errno) appended.
__attribute__((noreturn, format(printf, 4, 5)))
void fatal_errno_at(const char *file, int line, const char *hint, const char *fmt, ...);
#define FATAL_ERRNO(hint, ...) fatal_errno_at(__FILE__, __LINE__, (hint), __VA_ARGS__)
#define CHECK_ERRNO(cond, hint, ...) do { if (!(cond)) FATAL_ERRNO((hint), __VA_ARGS__); } while (0)

// Allocation that never returns NULL: a failure names the size and the call site.
void *xmalloc_at(const char *file, int line, size_t bytes);
void *xcalloc_at(const char *file, int line, size_t count, size_t size);
void *xrealloc_at(const char *file, int line, void *ptr, size_t bytes);
char *xstrdup_at(const char *file, int line, const char *s);
#define xmalloc(bytes) xmalloc_at(__FILE__, __LINE__, (bytes))
#define xcalloc(count, size) xcalloc_at(__FILE__, __LINE__, (count), (size))
#define xrealloc(ptr, bytes) xrealloc_at(__FILE__, __LINE__, (ptr), (bytes))
#define xstrdup(s) xstrdup_at(__FILE__, __LINE__, (s))

// A bounded error message buffer for functions that report errors to their caller
// (parsers, decoders, validators) instead of ending the job.
typedef struct {
    char msg[1024];
} ErrorBuf;
__attribute__((format(printf, 2, 3)))
int error_set(ErrorBuf *err, const char *fmt, ...);  // always returns -1
