/* DPDK side of intr_perf: the EAL interrupt thread's wake-up latency and the cost of
 * rte_intr_callback_register + rte_intr_callback_unregister, on a VFIO-MSI-X-type handle
 * backed by a plain eventfd (the EAL reads its 8-byte count, as it does for a device).
 *
 * Usage: intr_perf_dpdk EAL-ARGS -- ITERS PAIRS
 * Prints: "latency_ns p50 P50 p99 P99" and "regunreg_ns MEAN".
 * The main lcore writes the eventfd; the interrupt thread (pinned by the EAL to the CPUs that
 * are not lcores) runs the callback, which stamps the TSC. */
#define ALLOW_EXPERIMENTAL_API 1
#include <rte_eal.h>
#include <rte_interrupts.h>
#include <rte_cycles.h>
#include <rte_pause.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/eventfd.h>

static volatile uint64_t t_cb;
static volatile int done;

static void on_intr(void *arg)
{
	(void)arg;
	t_cb = rte_rdtsc();
	done = 1;
}

static void never(void *arg) { (void)arg; }

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static struct rte_intr_handle *handle_for(int fd)
{
	struct rte_intr_handle *h = rte_intr_instance_alloc(RTE_INTR_INSTANCE_F_PRIVATE);
	if (h == NULL || rte_intr_fd_set(h, fd) || rte_intr_type_set(h, RTE_INTR_HANDLE_VFIO_MSIX)) {
		fprintf(stderr, "intr handle setup failed\n");
		exit(1);
	}
	return h;
}

int main(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv);
	if (n < 0) {
		fprintf(stderr, "rte_eal_init failed\n");
		return 1;
	}
	argc -= n;
	argv += n;
	if (argc < 3) {
		fprintf(stderr, "usage: intr_perf_dpdk EAL-ARGS -- ITERS PAIRS\n");
		return 1;
	}
	int iters = atoi(argv[1]), pairs = atoi(argv[2]);
	double ns_per_cycle = 1e9 / (double)rte_get_tsc_hz();

	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct rte_intr_handle *h = handle_for(efd);
	if (rte_intr_callback_register(h, on_intr, NULL) < 0) {
		fprintf(stderr, "rte_intr_callback_register failed\n");
		return 1;
	}
	/* Let the thread rebuild its epoll set and go to sleep. */
	rte_delay_ms(20);
	uint64_t *lat = calloc(iters, sizeof(*lat));
	uint64_t one = 1;
	for (int i = 0; i < iters; i++) {
		done = 0;
		uint64_t t0 = rte_rdtsc();
		if (write(efd, &one, sizeof(one)) != sizeof(one))
			return 1;
		while (!done)
			rte_pause();
		lat[i] = t_cb - t0;
		/* Give the thread time to go back to sleep in epoll_wait. */
		rte_delay_us_block(100);
	}
	qsort(lat, iters, sizeof(*lat), cmp_u64);
	printf("latency_ns p50 %.0f p99 %.0f\n", lat[iters / 2] * ns_per_cycle,
	       lat[(int)(iters * 0.99)] * ns_per_cycle);

	int efd2 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct rte_intr_handle *h2 = handle_for(efd2);
	uint64_t t0 = rte_rdtsc();
	for (int i = 0; i < pairs; i++) {
		if (rte_intr_callback_register(h2, never, NULL) < 0)
			return 1;
		while (rte_intr_callback_unregister(h2, never, NULL) == -EAGAIN)
			rte_pause();
	}
	uint64_t t1 = rte_rdtsc();
	printf("regunreg_ns %.0f\n", (t1 - t0) * ns_per_cycle / pairs);
	fflush(stdout);
	rte_intr_callback_unregister(h, on_intr, NULL);
	rte_eal_cleanup();
	return 0;
}
