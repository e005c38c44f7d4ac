/*
 * timer.c: the engine's connection deadlines.
 *
 * One list per kind of timeout (keep-alive, head, body, write, linger,
 * grace), each sorted by deadline because all its entries share one
 * timeout, and a lower bound of the earliest of them all. It says when a
 * deadline passed; what that means for the
 * connection is conn.c's (nw_conn_timed_out), and when to look is the
 * driver's (engine.c hands it the next deadline).
 */
#include <stdint.h>

#include "engine/engine.h"

void
nw_timer_unlink(struct nw_conn *c)
{
	struct nw_timer_list *l;

	if (c->timer == NW_TIMER_NONE)
		return;
	l = &c->engine->timers[c->timer];
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
	c->timer = NW_TIMER_NONE;
}

/* Onto a list's tail: its deadline is the latest there. */
void
nw_timer_set(struct nw_conn *c, int timer)
{
	struct nw_engine *e = c->engine;
	struct nw_timer_list *l = &e->timers[timer];

	nw_timer_unlink(c);
	c->timer = timer;
	c->deadline = e->clock.mono_ms + l->timeout_ms;
	c->prev = l->tail;
	c->next = NULL;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
	if (c->deadline < e->timer_due)
		e->timer_due = c->deadline;
}

/*
 * What is due expires (each connection off its list first). timer_due
 * keeps the turns with nothing due cheap: it is never later than the
 * earliest deadline, and is made exact again here.
 */
void
nw_timers_expire(struct nw_engine *e)
{
	int64_t now = e->clock.mono_ms, due = INT64_MAX;
	int t;

	if (now < e->timer_due)
		return;
	for (t = 0; t < NW_TIMER_COUNT && !e->halt; t++) {
		struct nw_conn *c;

		while ((c = e->timers[t].head) != NULL && c->deadline <= now) {
			nw_timer_unlink(c);
			nw_conn_timed_out(c, t);
		}
	}
	for (t = 0; t < NW_TIMER_COUNT; t++)
		if (e->timers[t].head && e->timers[t].head->deadline < due)
			due = e->timers[t].head->deadline;
	e->timer_due = due;
}
