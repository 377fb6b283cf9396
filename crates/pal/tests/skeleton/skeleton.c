/*
 * A skeleton enclave runtime for tests: the PAL API of Inclavare's skeleton runtime
 * (v1, v2 or v3, chosen with -DPAL_VERSION=N) with no enclave behind it. It proves the
 * ABI from the C side, independently of rune's Rust types.
 *
 * pal_init:   prints "Hello Inclavare Containers!" to stdout and, to stderr, the args
 *             and log level it received. Args (space-separated): "init_error=N" makes
 *             it return -N. v3 checks that the attr carries fd -1 and addr 0.
 * payload:    argv "wait_timeout S" sleeps S seconds; "exit_code N" exits with N;
 *             prints "argv: a|b|c" (the exact argv) and "env: K=V" for every variable
 *             whose name starts with PAL_ or ENCLAVE_, then writes "Enclave runtime
 *             skeleton initialization succeeded" to its stderr fd.
 * pal_kill:   signals the payload (pid -1: all payloads).
 * pal_get_local_report (v3): a placeholder REPORT echoing the first 16 bytes of the
 *             target info; or, when the working directory holds "recorded-report.bin"
 *             (432 bytes: the body of a REPORT quoted on SGX hardware), that REPORT: a stand-in
 *             for an enclave runtime on hardware, for tests of the quote path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PAL_VERSION
#error "define PAL_VERSION"
#endif

struct pal_attr_v1 { const char *args; const char *log_level; };
struct pal_attr_v3 { struct pal_attr_v1 attr_v1; int fd; uint64_t addr; };
struct pal_stdio_fds { int stdin, stdout, stderr; };
struct pal_create_process_args {
	const char *path;
	const char **argv;
	const char **env;
	struct pal_stdio_fds *stdio;
	int *pid;
};
struct pal_exec_args { int pid; int *exit_value; };

/* Payloads alive: their pid and the write end of the pipe a created payload waits on
 * (pal_exec writes a byte on it to start it). Several may run at once (rune exec). */
#define MAX_PAYLOADS 64
static struct { pid_t pid; int start_fd; } payloads[MAX_PAYLOADS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int track(pid_t pid, int start_fd)
{
	int rc = -EAGAIN;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < MAX_PAYLOADS; i++)
		if (payloads[i].pid == 0) {
			payloads[i].pid = pid;
			payloads[i].start_fd = start_fd;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&lock);
	return rc;
}

/* Forgets `pid` and returns its start fd (or -1). */
static int untrack(pid_t pid, int keep)
{
	int fd = -1;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < MAX_PAYLOADS; i++)
		if (payloads[i].pid == pid) {
			fd = payloads[i].start_fd;
			payloads[i].start_fd = -1;
			if (!keep)
				payloads[i].pid = 0;
		}
	pthread_mutex_unlock(&lock);
	return fd;
}


/* Negative tests build a PAL that reports another version than it implements. */
#ifndef PAL_CLAIM_VERSION
#define PAL_CLAIM_VERSION PAL_VERSION
#endif

#if PAL_CLAIM_VERSION >= 2
int pal_get_version(void) { return PAL_CLAIM_VERSION; }
#endif

int pal_init(const void *attr)
{
	const struct pal_attr_v1 *a = attr;
#if PAL_VERSION >= 3
	const struct pal_attr_v3 *a3 = attr;
	if (a3->fd != -1 || a3->addr != 0)
		return -EINVAL;
#endif
	const char *args = a->args ? a->args : "";
	const char *p = strstr(args, "init_error=");
	fprintf(stderr, "pal_init: version=%d args=%s log_level=%s\n", PAL_VERSION, args,
		a->log_level ? a->log_level : "(null)");
	if (p)
		return -atoi(p + strlen("init_error="));
	printf("Hello Inclavare Containers!\n");
	fflush(stdout);
	return 0;
}

static void run_payload(const char **argv, const char **env, struct pal_stdio_fds *stdio)
{
	int code = 0;
	dup2(stdio->stdin, 0);
	dup2(stdio->stdout, 1);
	dup2(stdio->stderr, 2);
	printf("argv:");
	for (int i = 0; argv && argv[i]; i++)
		printf("%s%s", i ? "|" : " ", argv[i]);
	printf("\n");
	for (int i = 0; env && env[i]; i++)
		if (!strncmp(env[i], "PAL_", 4) || !strncmp(env[i], "ENCLAVE_", 8))
			printf("env: %s\n", env[i]);
	fflush(stdout);
	for (int i = 0; argv && argv[i]; i++) {
		if (!strcmp(argv[i], "wait_timeout") && argv[i + 1])
			sleep(atoi(argv[i + 1]));
		if (!strcmp(argv[i], "exit_code") && argv[i + 1])
			code = atoi(argv[i + 1]);
	}
	fprintf(stderr, "Enclave runtime skeleton initialization succeeded\n");
	_exit(code);
}

static int wait_payload(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	untrack(pid, 0);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

#if PAL_VERSION == 1
int pal_exec(const char *path, const char *argv[], struct pal_stdio_fds *stdio, int *exit_code)
{
	if (argv && argv[0] && (!path || strcmp(path, argv[0])))
		return -EINVAL;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		run_payload(argv, NULL, stdio);
	track(pid, -1);
	int rc = wait_payload(pid);
	if (rc < 0)
		return rc;
	*exit_code = rc;
	return 0;
}
#else
int pal_create_process(struct pal_create_process_args *args)
{
	if (!args->path || !args->argv || strcmp(args->path, args->argv[0]))
		return -EINVAL;
	/* The payload waits on this pipe until pal_exec, so "create" does not run it. */
	int go[2];
	/* Close-on-exec: payloads forked later must not hold another's start pipe. */
	if (pipe2(go, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* Only pal_exec's byte starts it: end of file means the runtime is gone
		 * (rune calls pal_create_process at create), and then it never runs. */
		char c;
		ssize_t n;
		close(go[1]);
		while ((n = read(go[0], &c, 1)) < 0 && errno == EINTR)
			;
		if (n != 1)
			_exit(127);
		run_payload(args->argv, args->env, args->stdio);
	}
	close(go[0]);
	if (track(pid, go[1]) < 0) {
		kill(pid, SIGKILL);
		close(go[1]);
		return -EAGAIN;
	}
	*args->pid = pid;
	return 0;
}

int pal_exec(struct pal_exec_args *args)
{
	int fd = untrack(args->pid, 1);
	if (fd >= 0) {
		while (write(fd, "1", 1) < 0 && errno == EINTR)
			;
		close(fd);
	}
	int rc = wait_payload(args->pid);
	if (rc < 0)
		return rc;
	*args->exit_value = rc;
	return 0;
}

int pal_kill(int pid, int sig)
{
	int rc = 0;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < MAX_PAYLOADS; i++)
		if (payloads[i].pid > 0 && (pid == -1 || payloads[i].pid == pid))
			if (kill(payloads[i].pid, sig) < 0 && errno != ESRCH)
				rc = -errno;
	pthread_mutex_unlock(&lock);
	return rc;
}
#endif

#if PAL_VERSION >= 3
int pal_get_local_report(void *targetinfo, int targetinfo_len, void *report, int *report_len)
{
	if (!targetinfo || targetinfo_len != 512 || !report || !report_len || *report_len < 432)
		return -EINVAL;
	FILE *recorded = fopen("recorded-report.bin", "rb");
	if (recorded) {
		size_t n = fread(report, 1, 432, recorded);
		fclose(recorded);
		if (n != 432)
			return -EINVAL;
		*report_len = 432;
		return 0;
	}
	memset(report, 0, 432);
	memcpy(report, "SKELETON-REPORT", 15);
	/* Echo the first bytes of the target info so callers can see it arrived. */
	memcpy((char *)report + 16, targetinfo, 16);
	*report_len = 432;
	return 0;
}
#endif

int pal_destroy(void)
{
	fprintf(stderr, "pal_destroy\n");
	return 0;
}
