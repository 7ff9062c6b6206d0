/*
 * worker.c - the "r1 engine" background worker: supervises the engine host.
 *
 * The model lives in a separate process, the engine host (`r1 serve`), which
 * this worker starts with fork+exec.  Code that can fault (model parsing,
 * CUDA) therefore never runs in a process the postmaster watches: if the host
 * crashes, backends waiting on it get an ERROR, this worker notices (SIGCHLD,
 * EOF on the status socket) and starts a new host after a backoff.
 *
 * The worker itself only exits through proc_exit(0/1) (SIGTERM, postmaster
 * death, an ERROR), so the postmaster never restarts other sessions because
 * of it.  A model that cannot load, or r1.device = 'cuda' without a usable
 * GPU, leaves the worker up in the FAILED (NO_DEVICE) state with the reason in
 * shared memory, where calls report it; it tries again at the next reload
 * (pg_reload_conf(), whether or not a setting changed: the files may have
 * been fixed).
 *
 * The host reports on a socketpair, one line per state change: "loading",
 * "ready {json}", "failed <reason>", "no_device <reason>".  Neither side ever
 * calls CUDA before a fork: the worker does not link the engine at all.
 *
 * Reloads are graceful.  When an engine setting changes (r1.model, r1.device,
 * r1.threads, ...) the worker says LOADING at once (new calls wait for the new
 * host), asks the running host to drain (SIGUSR1: it stops accepting and
 * answers the calls it has), and starts the new host when the old one has
 * exited, or stops it after r1.reload_timeout; calls cut off then fail with
 * SQLSTATE 57000 and a hint that says so (job items are not charged).
 *
 * Logs: the host's stderr is a pipe the worker reads; each line is relayed
 * through ereport, so it gets the server's timestamp and log_line_prefix.
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utime.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "client.h"
#include "settings.h"
#include "shmem.h"
#include "worker.h"

#define R1_BACKOFF_MIN_MS	500
#define R1_BACKOFF_MAX_MS	30000
#define R1_STABLE_MS		60000	/* a host up this long resets the backoff */
#define R1_STOP_WAIT_MS		5000	/* SIGTERM, then SIGKILL after this */
#define R1_LOG_LINE_MAX		4096	/* longer host stderr lines are split */

/* The settings a host is started with; a change restarts it. */
typedef struct R1HostConfig
{
	char		model[1024];
	int			device;
	int			threads;
	int			max_seqs;
	int			max_queued;
	int			max_ctx;
	double		gpu_memory_fraction;
	int			kv_memory;		/* MB, 0 = no limit (CPU) */
	bool		batch_invariant;
	int			kv_cache_dtype;
	int			cpu_precision;
} R1HostConfig;

static R1HostConfig r1_config;
static pid_t r1_host_pid = 0;
static int	r1_status_fd = -1;
static char r1_status_buf[16384];
static int	r1_status_len = 0;
static bool r1_host_ready = false;	/* current host said "ready" */
static bool r1_host_gave_up = false;	/* current host said
										 * "failed"/"no_device" */
static TimestampTz r1_host_ready_at = 0;
static bool r1_hold = false;	/* do not start a host until the settings
								 * change */
static int	r1_backoff_ms = 0;
static TimestampTz r1_next_start = 0;
static bool r1_draining = false;	/* the host was asked to drain (a reload) */
static TimestampTz r1_drain_deadline = 0;
static int	r1_stderr_fd = -1;	/* read end of the host's stderr */
static char r1_stderr_buf[R1_LOG_LINE_MAX + 1];
static int	r1_stderr_len = 0;
static char r1_socket_path[R1_SOCKET_PATH_LEN]; /* see shmem.h */
static TimestampTz r1_socket_touched = 0;

static void r1_config_read(R1HostConfig *c);
static void r1_host_start(void);
static void r1_host_stop(void);
static void r1_host_stop_for_reload(void);
static void r1_host_reap(bool block);
static void r1_host_read_status(void);
static void r1_host_read_stderr(bool flush);
static void r1_worker_on_exit(int code, Datum arg);
static void r1_worker_sigchld(SIGNAL_ARGS);

void
r1_register_worker(void)
{
	BackgroundWorker worker;

	/* pg_upgrade's binary-upgrade mode (postgres -b): no model is loaded */
	if (IsBinaryUpgrade)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_PostmasterStart;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "r1_pg", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "r1_engine_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "r1 engine", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "r1 engine", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
r1_config_read(R1HostConfig *c)
{
	memset(c, 0, sizeof(*c));
	strlcpy(c->model, r1_model ? r1_model : "", sizeof(c->model));
	c->device = r1_device;
	c->threads = r1_threads;
	c->max_seqs = r1_max_seqs;
	c->max_queued = r1_max_queued;
	c->max_ctx = r1_max_ctx;
	c->gpu_memory_fraction = r1_gpu_memory_fraction;
	c->kv_memory = r1_kv_memory;
	c->batch_invariant = r1_batch_invariant;
	c->kv_cache_dtype = r1_kv_cache_dtype;
	c->cpu_precision = r1_cpu_precision;
}

static void
r1_publish_config(void)
{
	SpinLockAcquire(&r1_shared->mutex);
	strlcpy(r1_shared->model_path, r1_config.model, sizeof(r1_shared->model_path));
	strlcpy(r1_shared->device_setting, r1_device_name(r1_config.device), sizeof(r1_shared->device_setting));
	SpinLockRelease(&r1_shared->mutex);
}

/* The host binary: r1.engine_path with "$bindir" replaced by the server's bin directory. */
static void
r1_resolve_engine_path(char *out, size_t size)
{
	const char *p = r1_engine_path ? r1_engine_path : "$bindir/r1";

	if (strncmp(p, "$bindir", 7) == 0)
	{
		char		bindir[MAXPGPATH];

		strlcpy(bindir, my_exec_path, sizeof(bindir));
		get_parent_directory(bindir);
		snprintf(out, size, "%s%s", bindir, p + 7);
	}
	else
		strlcpy(out, p, size);
}

/*
 * In the child between fork and exec: async-signal-safe calls only, and
 * nothing of PostgreSQL's (its exit callbacks must not run here).
 */
static void
pg_attribute_noreturn()
r1_host_exec(const char *path, char **argv, int fd, int errfd, pid_t parent, const char *exec_failed)
{
	static const int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGUSR1,
	SIGUSR2, SIGCHLD, SIGALRM, SIGTTIN, SIGTTOU, SIGXFSZ};
	sigset_t	none;
	int			nul;
	const char *e;

	for (int i = 0; i < lengthof(sigs); i++)
		signal(sigs[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	/* die with the worker, even if it is killed */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);

	/* stderr to the worker's pipe (fds 0-2 are open, so errfd >= 3) */
	if (errfd >= 0 && dup2(errfd, 2) < 0)
		_exit(126);

	/* status socket as fd 3, /dev/null as stdin, nothing else inherited */
	if (fd != 3)
	{
		if (dup2(fd, 3) < 0)
			_exit(126);
	}
	else
		fcntl(3, F_SETFD, 0);
	nul = open("/dev/null", O_RDONLY);
	if (nul >= 0 && nul != 0)
		dup2(nul, 0);
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 4, ~0U, 0) != 0)
#endif
		for (int i = 4; i < 65536; i++)
			close(i);

	/*
	 * The engine's OpenMP threads wait for each other without spinning,
	 * unless the server's environment says otherwise: on a busy database
	 * server libgomp's default spin-waiting keeps a core from the thread that
	 * is late (1.5B Q8_0 on 2 cores beside two busy processes: 2.0 decode
	 * tokens/s spinning, 6 to 8 passive; BENCHMARKS.md).
	 */
	if (getenv("OMP_WAIT_POLICY") == NULL && getenv("GOMP_SPINCOUNT") == NULL)
		setenv("OMP_WAIT_POLICY", "passive", 1);

	execv(path, argv);

	/* tell the worker why, as a "failed" line */
	e = strerror(errno);
	if (write(3, exec_failed, strlen(exec_failed)) >= 0 &&
		write(3, e, strlen(e)) >= 0)
	{
		if (write(3, "\n", 1) < 0)
			_exit(127);
	}
	_exit(127);
}

static void
r1_host_start(void)
{
	char		path[MAXPGPATH];
	char		exec_failed[MAXPGPATH + 64];
	char		threads[16],
				max_seqs[16],
				max_queued[16],
				max_ctx[16],
				kv_memory[16],
				gpu[32];
	char	   *argv[32];
	int			n = 0;
	int			sv[2];
	int			ep[2] = {-1, -1};
	pid_t		parent = getpid();
	pid_t		pid;

	r1_resolve_engine_path(path, sizeof(path));
	snprintf(exec_failed, sizeof(exec_failed), "failed could not execute the engine host \"%s\": ", path);
	snprintf(threads, sizeof(threads), "%d", r1_config.threads);
	snprintf(max_seqs, sizeof(max_seqs), "%d", r1_config.max_seqs);
	snprintf(max_queued, sizeof(max_queued), "%d", r1_config.max_queued);
	snprintf(max_ctx, sizeof(max_ctx), "%d", r1_config.max_ctx);
	snprintf(gpu, sizeof(gpu), "%g", r1_config.gpu_memory_fraction);
	snprintf(kv_memory, sizeof(kv_memory), "%d", r1_config.kv_memory);

	/* argv[0] "r1": the host's command line reads "r1 serve ..." */
	argv[n++] = "r1";
	argv[n++] = "serve";
	argv[n++] = "--socket";
	argv[n++] = r1_socket_path;
	argv[n++] = "--model";
	argv[n++] = r1_config.model;
	argv[n++] = "--device";
	argv[n++] = (char *) r1_device_name(r1_config.device);
	argv[n++] = "--threads";
	argv[n++] = threads;
	argv[n++] = "--max-seqs";
	argv[n++] = max_seqs;
	argv[n++] = "--max-queued";
	argv[n++] = max_queued;
	argv[n++] = "--max-ctx";
	argv[n++] = max_ctx;
	argv[n++] = "--gpu-memory-fraction";
	argv[n++] = gpu;
	argv[n++] = "--kv-memory";
	argv[n++] = kv_memory;
	if (r1_config.batch_invariant)
		argv[n++] = "--batch-invariant";
	argv[n++] = "--kv-cache-dtype";
	argv[n++] = (char *) r1_kv_cache_dtype_name(r1_config.kv_cache_dtype);
	argv[n++] = "--cpu-precision";
	argv[n++] = (char *) r1_cpu_precision_name(r1_config.cpu_precision);
	argv[n++] = "--status-fd";
	argv[n++] = "3";

	/*
	 * ps shows which server a host belongs to (several clusters on one
	 * machine)
	 */
	argv[n++] = "--cluster";
	argv[n++] = (cluster_name && cluster_name[0]) ? cluster_name : DataDir;
	argv[n] = NULL;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
	{
		ereport(LOG,
				(errmsg("r1 engine: could not create a socket pair: %m")));
		r1_next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), R1_BACKOFF_MAX_MS);
		return;
	}

	if (pipe2(ep, O_CLOEXEC) != 0)
		ep[0] = ep[1] = -1;		/* then the host's stderr is the server's */

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0)
		r1_host_exec(path, argv, sv[1], ep[1], parent, exec_failed);
	close(sv[1]);
	if (ep[1] >= 0)
		close(ep[1]);
	if (pid < 0)
	{
		ereport(LOG,
				(errmsg("r1 engine: could not fork the engine host: %m")));
		close(sv[0]);
		if (ep[0] >= 0)
			close(ep[0]);
		r1_next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), R1_BACKOFF_MAX_MS);
		return;
	}
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	if (r1_stderr_fd >= 0)
		r1_host_read_stderr(true);	/* the last words of a previous host */
	r1_stderr_fd = ep[0];
	r1_stderr_len = 0;
	if (ep[0] >= 0)
		fcntl(ep[0], F_SETFL, fcntl(ep[0], F_GETFL) | O_NONBLOCK);
	r1_status_fd = sv[0];
	r1_status_len = 0;
	r1_host_pid = pid;
	r1_host_ready = false;
	r1_host_gave_up = false;

	SpinLockAcquire(&r1_shared->mutex);
	r1_shared->host_pid = pid;
	r1_shared->host_generation++;
	r1_shared->state = R1_STATE_LOADING;
	r1_shared->reason[0] = '\0';
	r1_shared->model_name[0] = '\0';
	r1_shared->device[0] = '\0';
	r1_shared->note[0] = '\0';
	r1_shared->max_ctx = 0;
	r1_shared->weight_bytes = 0;
	r1_shared->ready_since = 0;
	SpinLockRelease(&r1_shared->mutex);

	ereport(LOG,
			(errmsg("r1 engine: started engine host (pid %d) for model \"%s\" on device %s",
					(int) pid, r1_config.model, r1_device_name(r1_config.device))));
}

static void
r1_copy_text(Jsonb *j, const char *key, char *dst, size_t size)
{
	text	   *t = r1_json_text(j, key);

	if (t != NULL)
		text_to_cstring_buffer(t, dst, size);
}

static void
r1_host_on_ready(const char *js)
{
	MemoryContext ctx = AllocSetContextCreate(CurrentMemoryContext, "r1 ready", ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(ctx);
	Jsonb	   *j = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(js)));
	char		model[256] = "",
				device[16] = "",
				note[256] = "";
	int			ctx_len = (int) r1_json_int(j, "ctx");
	int64		weight_bytes = r1_json_int(j, "weight_bytes");

	r1_copy_text(j, "model", model, sizeof(model));
	r1_copy_text(j, "device", device, sizeof(device));
	r1_copy_text(j, "note", note, sizeof(note));
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);

	r1_host_ready = true;
	r1_host_ready_at = GetCurrentTimestamp();
	SpinLockAcquire(&r1_shared->mutex);
	strlcpy(r1_shared->model_name, model, sizeof(r1_shared->model_name));
	strlcpy(r1_shared->device, device, sizeof(r1_shared->device));
	strlcpy(r1_shared->note, note, sizeof(r1_shared->note));
	r1_shared->max_ctx = ctx_len;
	r1_shared->weight_bytes = weight_bytes;
	r1_shared->state = R1_STATE_READY;
	r1_shared->reason[0] = '\0';
	r1_shared->ready_since = r1_host_ready_at;
	SpinLockRelease(&r1_shared->mutex);
	ereport(LOG,
			(errmsg("r1 engine: engine host (pid %d) is ready: model \"%s\" on %s",
					(int) r1_host_pid, model, device[0] ? device : "?")));
	if (note[0] != '\0')
		ereport(r1_config.device == R1_DEVICE_AUTO && strcmp(device, "cpu") == 0 ? WARNING : LOG,
				(errmsg("r1 engine: %s", note),
				 r1_config.device == R1_DEVICE_AUTO && strcmp(device, "cpu") == 0 ?
				 errhint("Set r1.device = 'cpu' to make the CPU the intended device, or fix the GPU setup.") : 0));
}

static void
r1_host_line(char *line)
{
	if (strcmp(line, "loading") == 0)
		return;					/* already LOADING since the start */
	if (strncmp(line, "ready ", 6) == 0)
		r1_host_on_ready(line + 6);
	else if (strncmp(line, "failed ", 7) == 0 || strncmp(line, "no_device ", 10) == 0)
	{
		bool		no_device = line[0] == 'n';
		const char *reason = strchr(line, ' ') + 1;

		r1_host_gave_up = true;
		r1_shmem_set_state(no_device ? R1_STATE_NO_DEVICE : R1_STATE_FAILED, reason);
		if (strncmp(reason, "could not execute the engine host", 33) == 0)
			ereport(WARNING,
					(errmsg("r1 engine: %s", reason),
					 errhint("Install the r1 binary with \"make install\" in the r1_pg source tree, or set r1.engine_path (server start) to where it is.")));
		else
			ereport(WARNING,
					(errmsg("r1 engine: the engine host could not load model \"%s\": %s",
							r1_config.model, reason),
					 errhint("Fix the model or set r1.model/r1.device, then reload the configuration.")));
	}
	else
		ereport(LOG,
				(errmsg("r1 engine: unexpected status line from the engine host: \"%s\"", line)));
}

static void
r1_host_read_status(void)
{
	while (r1_status_fd >= 0)
	{
		ssize_t		n = read(r1_status_fd, r1_status_buf + r1_status_len,
							 sizeof(r1_status_buf) - 1 - r1_status_len);
		char	   *start;
		char	   *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
		{
			/* EOF: the host exited (or closed the socket); reap it */
			close(r1_status_fd);
			r1_status_fd = -1;
			return;
		}
		r1_status_len += (int) n;
		r1_status_buf[r1_status_len] = '\0';
		start = r1_status_buf;
		while ((nl = strchr(start, '\n')) != NULL)
		{
			*nl = '\0';
			r1_host_line(start);
			start = nl + 1;
		}
		r1_status_len -= (int) (start - r1_status_buf);
		memmove(r1_status_buf, start, r1_status_len);
		if (r1_status_len == sizeof(r1_status_buf) - 1)
			r1_status_len = 0;	/* an overlong line: drop it */
	}
}

/* Relay one line of the host's stderr through the server's log. */
static void
r1_relay_line(char *line)
{
	const char *msg = line;
	size_t		len = strlen(line);

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
		line[--len] = '\0';
	if (len == 0)
		return;

	/*
	 * the host's own prefix "r1 engine host[pid]: " says nothing the log line
	 * does not
	 */
	if (strncmp(line, "r1 engine host[", 15) == 0)
	{
		const char *p = strstr(line, "]: ");

		if (p)
			msg = p + 3;
	}
	ereport(LOG,
			(errmsg("r1 engine host (pid %d): %s", (int) r1_host_pid, msg)));
}

/*
 * Read what the host wrote to stderr and relay whole lines; flush: the host
 * is gone, relay a last partial line too and close the pipe.
 */
static void
r1_host_read_stderr(bool flush)
{
	while (r1_stderr_fd >= 0)
	{
		ssize_t		n = read(r1_stderr_fd, r1_stderr_buf + r1_stderr_len,
							 R1_LOG_LINE_MAX - r1_stderr_len);
		char	   *start;
		char	   *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !flush)
			return;
		if (n <= 0)
		{
			if (r1_stderr_len > 0)
			{
				r1_stderr_buf[r1_stderr_len] = '\0';
				r1_relay_line(r1_stderr_buf);
				r1_stderr_len = 0;
			}
			if (n == 0 || flush)
			{
				close(r1_stderr_fd);
				r1_stderr_fd = -1;
			}
			return;
		}
		r1_stderr_len += (int) n;
		r1_stderr_buf[r1_stderr_len] = '\0';
		start = r1_stderr_buf;
		while ((nl = memchr(start, '\n', r1_stderr_len - (start - r1_stderr_buf))) != NULL)
		{
			*nl = '\0';
			r1_relay_line(start);
			start = nl + 1;
		}
		r1_stderr_len -= (int) (start - r1_stderr_buf);
		memmove(r1_stderr_buf, start, r1_stderr_len);
		if (r1_stderr_len == R1_LOG_LINE_MAX)
		{
			/* an overlong line: relay it in pieces */
			r1_stderr_buf[r1_stderr_len] = '\0';
			r1_relay_line(r1_stderr_buf);
			r1_stderr_len = 0;
		}
	}
}

static void
r1_describe_exit(int status, char *buf, size_t size)
{
	if (WIFEXITED(status))
		snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "was terminated by signal %d: %s",
				 WTERMSIG(status), pg_strsignal(WTERMSIG(status)));
	else
		snprintf(buf, size, "exited with unrecognized status %d", status);
}

/* Collect an exited host and decide what comes next. */
static void
r1_host_reap(bool block)
{
	int			status = 0;
	pid_t		r;
	char		how[128];
	char		reason[R1_REASON_LEN];
	pid_t		pid = r1_host_pid;

	if (pid == 0)
		return;
	r = waitpid(pid, &status, block ? 0 : WNOHANG);
	if (r == 0 || (r < 0 && errno == EINTR))
		return;
	if (r < 0)
		status = 0;				/* ECHILD: reaped elsewhere; nothing to learn */

	/* last words first: a "failed" line may still be unread */
	r1_host_read_status();
	r1_host_read_stderr(true);
	if (r1_status_fd >= 0)
		close(r1_status_fd);
	r1_status_fd = -1;
	r1_host_pid = 0;
	unlink(r1_socket_path);
	SpinLockAcquire(&r1_shared->mutex);
	r1_shared->host_pid = 0;
	SpinLockRelease(&r1_shared->mutex);

	r1_describe_exit(status, how, sizeof(how));
	if (r1_draining)
	{
		/*
		 * a reload: the old host answered its calls and left; start the new
		 * one now
		 */
		r1_draining = false;
		r1_next_start = 0;
		ereport(LOG,
				(errmsg("r1 engine: the previous engine host (pid %d) finished its requests and %s",
						(int) pid, how)));
	}
	else if (r1_host_gave_up)
	{
		/* state and reason already set from its "failed" line */
		r1_hold = true;
	}
	else if (!r1_host_ready)
	{
		snprintf(reason, sizeof(reason),
				 "The engine host %s while loading model \"%s\".", how, r1_config.model);
		r1_shmem_set_state(R1_STATE_FAILED, reason);
		r1_hold = true;
		ereport(WARNING,
				(errmsg("r1 engine: engine host (pid %d) %s while loading the model; not restarting it",
						(int) pid, how),
				 errhint("Check the model files, then reload the configuration to try again.")));
	}
	else
	{
		TimestampTz now = GetCurrentTimestamp();

		if (r1_backoff_ms == 0 ||
			TimestampDifferenceExceeds(r1_host_ready_at, now, R1_STABLE_MS))
			r1_backoff_ms = R1_BACKOFF_MIN_MS;
		else
			r1_backoff_ms = Min(r1_backoff_ms * 2, R1_BACKOFF_MAX_MS);
		r1_next_start = TimestampTzPlusMilliseconds(now, r1_backoff_ms);
		snprintf(reason, sizeof(reason),
				 "The engine host (pid %d) %s; it is restarted in %d ms.",
				 (int) pid, how, r1_backoff_ms);
		SpinLockAcquire(&r1_shared->mutex);
		r1_shared->state = R1_STATE_RESTARTING;
		strlcpy(r1_shared->reason, reason, sizeof(r1_shared->reason));
		r1_shared->host_restarts++;
		SpinLockRelease(&r1_shared->mutex);
		ereport(WARNING,
				(errmsg("r1 engine: engine host (pid %d) %s; restarting it in %d ms",
						(int) pid, how, r1_backoff_ms),
				 errdetail("Calls it was running failed with SQLSTATE 55000; the server and other sessions are not affected.")));
	}
}

/* SIGTERM the host, SIGKILL it if it does not go, and reap it. */
static void
r1_host_stop(void)
{
	TimestampTz deadline;

	if (r1_host_pid == 0)
		return;
	kill(r1_host_pid, SIGTERM);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), R1_STOP_WAIT_MS);
	while (r1_host_pid != 0 && waitpid(r1_host_pid, NULL, WNOHANG) == 0)
	{
		if (GetCurrentTimestamp() >= deadline)
		{
			kill(r1_host_pid, SIGKILL);
			waitpid(r1_host_pid, NULL, 0);
			break;
		}
		pg_usleep(10000);
	}
	r1_host_read_stderr(true);
	if (r1_status_fd >= 0)
		close(r1_status_fd);
	r1_status_fd = -1;
	r1_host_pid = 0;
	r1_draining = false;
	unlink(r1_socket_path);
	SpinLockAcquire(&r1_shared->mutex);
	r1_shared->host_pid = 0;
	SpinLockRelease(&r1_shared->mutex);
}

/*
 * A setting changed: calls wait for the new host from now on (LOADING); the
 * running host finishes what it has, or is stopped after r1.reload_timeout.
 */
static void
r1_host_replace(void)
{
	char		reason[R1_REASON_LEN];

	snprintf(reason, sizeof(reason),
			 "Switching to model \"%s\" on device %s: calls wait for it; calls already running finish first (at most r1.reload_timeout).",
			 r1_config.model, r1_device_name(r1_config.device));
	SpinLockAcquire(&r1_shared->mutex);
	if (r1_config.model[0] != '\0')
	{
		r1_shared->state = R1_STATE_LOADING;
		strlcpy(r1_shared->reason, reason, sizeof(r1_shared->reason));
		r1_shared->model_name[0] = '\0';
		r1_shared->ready_since = 0;
	}
	SpinLockRelease(&r1_shared->mutex);

	if (r1_host_pid == 0)
		return;
	if (r1_draining)
		return;					/* already on its way out; the newest settings
								 * win */
	if (r1_host_ready && r1_reload_timeout > 0)
	{
		r1_draining = true;
		r1_drain_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r1_reload_timeout);
		kill(r1_host_pid, SIGUSR1);
		ereport(LOG,
				(errmsg("r1 engine: settings changed; the engine host (pid %d) finishes its requests (at most %d ms), then model \"%s\" is loaded",
						(int) r1_host_pid, r1_reload_timeout, r1_config.model)));
	}
	else
	{
		ereport(LOG,
				(errmsg("r1 engine: settings changed; restarting the engine host")));
		r1_host_stop_for_reload();
	}
}

/* Stop the host now; calls it still runs fail with "stopped for a configuration change". */
static void
r1_host_stop_for_reload(void)
{
	SpinLockAcquire(&r1_shared->mutex);
	r1_shared->reload_stopped_generation = r1_shared->host_generation;
	SpinLockRelease(&r1_shared->mutex);
	r1_host_stop();
}

static void
r1_worker_on_exit(int code, Datum arg)
{
	r1_host_stop();
	if (r1_shared != NULL)
	{
		SpinLockAcquire(&r1_shared->mutex);
		r1_shared->worker_pid = 0;
		r1_shared->state = R1_STATE_STARTING;
		strlcpy(r1_shared->reason, "The r1 engine worker is not running.", sizeof(r1_shared->reason));
		SpinLockRelease(&r1_shared->mutex);
	}
}

static void
r1_worker_sigchld(SIGNAL_ARGS)
{
	int			save_errno = errno;

	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * The host's socket: ".r1_engine.<port>" in the first unix_socket_directories
 * entry, else (no socket directory, or a path too long) in the data directory.
 */
static void
r1_choose_socket_path(void)
{
	char	   *raw = pstrdup(Unix_socket_directories ? Unix_socket_directories : "");
	List	   *dirs = NIL;

	r1_socket_path[0] = '\0';
	if (SplitDirectoriesString(raw, ',', &dirs) && dirs != NIL)
	{
		const char *dir = (const char *) linitial(dirs);
		int			len = snprintf(r1_socket_path, sizeof(r1_socket_path), "%s/.r1_engine.%d",
								   dir, PostPortNumber);

		if (dir[0] != '/' || len >= (int) sizeof(r1_socket_path))
		{
			ereport(LOG,
					(errmsg("r1 engine: socket directory \"%s\" is unusable for the engine socket; using the data directory", dir)));
			r1_socket_path[0] = '\0';
		}
	}
	if (r1_socket_path[0] == '\0')
		strlcpy(r1_socket_path, R1_SOCKET_FALLBACK, sizeof(r1_socket_path));
	SpinLockAcquire(&r1_shared->mutex);
	strlcpy(r1_shared->socket_path, r1_socket_path, sizeof(r1_shared->socket_path));
	SpinLockRelease(&r1_shared->mutex);
}

/*
 * Touch the socket now and then, as the postmaster touches its own: tmp
 * cleaners (systemd-tmpfiles) remove old files from /tmp.
 */
static void
r1_touch_socket(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (r1_host_pid != 0 && TimestampDifferenceExceeds(r1_socket_touched, now, 58 * 60 * 1000))
	{
		(void) utime(r1_socket_path, NULL);
		r1_socket_touched = now;
	}
}

/* Sleep until the latch, the host's status socket or its stderr wakes us. */
static void
r1_wait(long timeout)
{
	WaitEventSet *set = CreateWaitEventSet(CurrentMemoryContext, 4);
	WaitEvent	ev;

	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	if (r1_status_fd >= 0)
		AddWaitEventToSet(set, WL_SOCKET_READABLE, r1_status_fd, NULL, NULL);
	if (r1_stderr_fd >= 0)
		AddWaitEventToSet(set, WL_SOCKET_READABLE, r1_stderr_fd, NULL, NULL);
	(void) WaitEventSetWait(set, timeout, &ev, 1, PG_WAIT_EXTENSION);
	FreeWaitEventSet(set);
}

void
r1_engine_worker_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGCHLD, r1_worker_sigchld);
	BackgroundWorkerUnblockSignals();

	before_shmem_exit(r1_worker_on_exit, (Datum) 0);

	SpinLockAcquire(&r1_shared->mutex);
	r1_shared->worker_pid = MyProcPid;
	r1_shared->worker_start = GetCurrentTimestamp();
	SpinLockRelease(&r1_shared->mutex);

	/* a host of a previous worker incarnation died with it (PDEATHSIG) */
	r1_choose_socket_path();
	unlink(r1_socket_path);
	unlink(R1_SOCKET_FALLBACK); /* left by a build that kept it in the data
								 * directory */
	r1_config_read(&r1_config);
	r1_publish_config();

	for (;;)
	{
		long		timeout = 1000;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			R1HostConfig c;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			r1_config_read(&c);
			if (memcmp(&c, &r1_config, sizeof(c)) != 0)
			{
				r1_config = c;
				r1_publish_config();
				r1_host_replace();
				r1_hold = false;
				r1_backoff_ms = 0;
				r1_next_start = 0;
			}
			else if (r1_hold && r1_host_pid == 0 && r1_config.model[0] != '\0')
			{
				/* a failed load is tried again: the files may have been fixed */
				ereport(LOG,
						(errmsg("r1 engine: configuration reloaded; loading model \"%s\" again",
								r1_config.model)));
				r1_hold = false;
				r1_backoff_ms = 0;
				r1_next_start = 0;
			}
		}

		if (r1_status_fd >= 0)
			r1_host_read_status();
		r1_host_read_stderr(false);
		r1_host_reap(false);
		r1_touch_socket();
		if (r1_draining && GetCurrentTimestamp() >= r1_drain_deadline)
		{
			ereport(LOG,
					(errmsg("r1 engine: the engine host (pid %d) did not finish its requests within r1.reload_timeout (%d ms); stopping it",
							(int) r1_host_pid, r1_reload_timeout)));
			r1_host_stop_for_reload();
		}

		if (r1_host_pid == 0 && !r1_hold)
		{
			if (r1_config.model[0] == '\0')
			{
				r1_shmem_set_state(R1_STATE_NOT_CONFIGURED, "r1.model is not set.");
				r1_hold = true;
			}
			else if (GetCurrentTimestamp() >= r1_next_start)
				r1_host_start();
			else
				timeout = Max(1, (long) ((r1_next_start - GetCurrentTimestamp()) / 1000));
		}

		if (r1_draining)
			timeout = Min(timeout, 100);
		r1_wait(timeout);
		ResetLatch(MyLatch);
	}
}
