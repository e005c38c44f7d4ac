/*
 * asgi_timer.c: the ASGI worker's connection deadlines.
 *
 * One list per kind of timeout (keep-alive, head, body, write, linger,
 * grace), each sorted by deadline because all its entries share one
 * timeout, and one loop timer (call_later) for the earliest of them all.
 * It says when a deadline passed; what that means for the connection is
 * asgi_conn.c's (nw_aconn_timed_out).
 */
#include <stdint.h>

#include "asgi.h"

void
nw_atimer_unlink(struct nw_aserver *s, struct nw_aconn *c)
{
	struct nw_atimer_list *l;

	if (c->timer == NW_ATIMER_NONE)
		return;
	l = &s->timers[c->timer];
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
	c->timer = NW_ATIMER_NONE;
}

/* Onto a list's tail: its deadline is the latest there. */
void
nw_atimer_set(struct nw_aserver *s, struct nw_aconn *c, int timer)
{
	struct nw_atimer_list *l = &s->timers[timer];

	nw_atimer_unlink(s, c);
	c->timer = timer;
	c->deadline = s->clock.mono_ms + l->timeout_ms;
	c->prev = l->tail;
	c->next = NULL;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

/* The loop timer fires at the earliest deadline (or a little after). */
void
nw_atimers_arm(struct nw_aserver *s)
{
	int64_t next = INT64_MAX;
	PyObject *delay, *h;
	int t;

	for (t = 0; t < NW_ATIMER_COUNT; t++)
		if (s->timers[t].head && s->timers[t].head->deadline < next)
			next = s->timers[t].head->deadline;
	if (s->accept_paused_until && s->accept_paused_until < next)
		next = s->accept_paused_until;
	if (next == INT64_MAX || s->closed)
		return;
	if (s->tick_handle != NULL) {
		if (s->tick_due <= next)
			return;
		h = PyObject_CallMethod(s->tick_handle, "cancel", NULL);
		Py_XDECREF(h);
		Py_CLEAR(s->tick_handle);
	}
	delay = PyFloat_FromDouble(next > s->clock.mono_ms
	        ? (double)(next - s->clock.mono_ms) / 1000.0 + 0.005
	        : 0.0);
	if (delay == NULL) {
		nw_aserver_print_error("cannot arm the timer");
		return;
	}
	h = PyObject_CallFunctionObjArgs(
	    s->call_later, delay, s->on_tick, NULL);
	Py_DECREF(delay);
	if (h == NULL) {
		nw_aserver_print_error("cannot arm the timer");
		return;
	}
	s->tick_handle = h;
	s->tick_due = next;
}

/* From the loop timer: what is due expires, a paused accept resumes. */
void
nw_atimers_expire(struct nw_aserver *s)
{
	int64_t now = s->clock.mono_ms;
	int t;

	for (t = 0; t < NW_ATIMER_COUNT; t++) {
		struct nw_aconn *c;

		while ((c = s->timers[t].head) != NULL && c->deadline <= now) {
			nw_atimer_unlink(s, c);
			nw_aconn_timed_out(s, c, t);
		}
	}
	if (s->accept_paused_until && now >= s->accept_paused_until) {
		s->accept_paused_until = 0;
		nw_alisteners_update(s);
	}
}
