/*
 * test_supervise.c: the master's pure decisions, without processes: request
 * budgets drawn per worker stay in [max_requests, max_requests + jitter] and
 * are spread across that range.
 */
#include <stdlib.h>

#include "master.h"
#include "tap.h"

static void
budgets_in_range_and_spread(void)
{
	struct nw_config config = { .max_requests = 1000,
		.max_requests_jitter = 50 };
	unsigned long lo = ~0UL, hi = 0;
	int seen[51] = { 0 }, distinct = 0, in_range = 1;

	srandom(42);
	for (int i = 0; i < 200; i++) {
		unsigned long b = nw_supervise_draw_budget(&config,
		    (unsigned long)random());

		if (b < 1000 || b > 1050) {
			in_range = 0;
			continue;
		}
		lo = b < lo ? b : lo;
		hi = b > hi ? b : hi;
		if (!seen[b - 1000]++)
			distinct++;
	}
	ok(in_range, "200 budgets all lie in [1000, 1050]");
	ok(distinct >= 30, "they take %d distinct values (>= 30)", distinct);
	ok(lo <= 1005 && hi >= 1045, "they span the range: %lu..%lu", lo, hi);
}

static void
no_jitter_means_exact_budget(void)
{
	struct nw_config config = { .max_requests = 7 };

	is_int((long long)nw_supervise_draw_budget(&config, 123456), 7,
	    "jitter 0: the budget is max_requests");
}

int
main(void)
{
	budgets_in_range_and_spread();
	no_jitter_means_exact_budget();
	return done_testing();
}
