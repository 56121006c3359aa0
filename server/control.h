/* nbdshadow: the control socket (DESIGN §3.3).
 *
 * An operator steers a running migration through a Unix socket (mode
 * 0600: only the user running nbdkit can connect) with the nbdshadow CLI.
 * The protocol is one request line, one reply line:
 *
 *   request:  VERB [ARG...] "\n"          (at most 4096 bytes, ASCII)
 *   reply:    "ok" [SP PAYLOAD] "\n"      or   "error" SP MESSAGE "\n"
 *
 * Every request gets a reply, malformed ones an "error" reply; a client
 * may send several requests on one connection, also all in one write,
 * and gets the replies in order.  The server never blocks on a slow
 * client beyond its own thread, and never crashes on input.
 *
 * Details a script may rely on: the 4096 bytes include the "\n"; a "\r"
 * before it is ignored; words are separated by one or more spaces; any
 * byte outside printable ASCII (tabs included) makes the line malformed.
 * A newline in a payload or message is sent as a space, so a reply is
 * always one line.  Limits: 64 connections at once; a client with more
 * than 4 MiB of replies unread is disconnected; a peer whose uid is
 * neither ours nor root's is refused (beyond the 0600 mode).
 *
 * Verbs (the handler decides what they mean; see control_handler_fn):
 *   status                 PAYLOAD = the status JSON object (below)
 *   pause | resume         background and prefetch copying
 *   rate BYTES             copy ceiling in bytes/s, 0 = unlimited
 *   verify                 start verification; progress and result in
 *                          status.verify, whose state is "running" by
 *                          the time the reply is sent (the CLI polls it
 *                          until "done" or "failed")
 *   cutover [verified]     refuses unless synced (and verified if asked)
 *   prefetch POLICY        off|readahead|ngram|lstm|hybrid
 *   help                   PAYLOAD = the list of verbs
 *
 * The status JSON object carries at least (DESIGN §3.3):
 *   "phase": "copying"|"synced"|"verifying"|"cutover"|"done",
 *   "status_line": the nbdinfo one-liner,
 *   "size", "block_size", "blocks_total", "blocks_resident",
 *   "blocks_written", "bytes_resident",
 *   "bytes_copied": { "on_demand", "prefetch", "background", "total" },
 *   "copies_busy": { "skipped" (client reads' copies whose range was
 *                   busy), "requeued" (client reads' copies handed to
 *                   the copier: busy, failed or out of memory) },
 *   "client_reads": { "ops", "bytes_shadow", "bytes_origin", "hit_ratio" },
 *   "client_writes": { "ops", "bytes" },
 *   "prefetch": { "policy", "issued" (blocks queued), "copied" (blocks
 *                 prefetch copied), "used", "wasted", "outstanding"
 *                 (prefetched blocks neither read nor overwritten yet),
 *                 "precision" (used / copied: prefetched blocks read per
 *                 block prefetch copied; those not read yet count as
 *                 unread), "depth", "threshold" (the current number of
 *                 new blocks a round may queue and the probability a
 *                 candidate needs), "hybrid_depth" (the
 *                 hybrid's lookahead in accesses; 0 until the hybrid
 *                 exists, which it does from its first use on, also
 *                 after a switch to another policy),
 *                 "rounds" (predictions that gave candidates),
 *                 "batched_rounds" (rounds beyond the first of a batch
 *                 of accesses the predictor thread found waiting: one
 *                 per stream among them), "accesses", "ring_dropped"
 *                 (accesses lost to a full ring), "trace_records",
 *                 "memory_bytes" (the predictor's),
 *                 "accuracy": { model name: recent accuracy (share of
 *                 accesses whose first new block -- the first their
 *                 stream had not touched -- was among the candidates
 *                 the model gave after that stream's previous access;
 *                 predictor.h), "hybrid.ngram"/"hybrid.lstm": the
 *                 hybrid's own soft accuracy of its two parts },
 *                 once the LSTM exists "lstm_training": { "chunks",
 *                 "known", "replays", "skipped", "train_ms", "loss",
 *                 "size_input" (its inputs carry request sizes) },
 *                 once the n-gram exists "ngram": { "order" (of the
 *                 contexts answering now), "sized" (they hold the last
 *                 request's size class), "size_context" (sized contexts
 *                 may answer), "order_changes" } },
 *   "copy_rate" (bytes/s), "rate_limit" (0 = none), "paused",
 *   "background", "eta_seconds" (null when unknown),
 *   "copier": { "running", "transfers", "zero_transfers", "errors",
 *               "window" (transfers allowed at once while clients are
 *               active), "active" (transfers in progress), "pause_ms",
 *               "client_latency_us", "client_latency_floor_us",
 *               "shadow_read_latency_us", "shadow_read_quiet_us"
 *               (client reads served by the shadow alone: mean over
 *               the last half-second tick in which any ended, and over
 *               the last tick the sweep was held to measure them, 0
 *               until one was; pacer.h),
 *               "sweep_gap_ms" (the sweep's pacing per 2 MiB it
 *               copies while those reads are slowed; 0 = unpaced),
 *               "predictions_copied", "prediction_latency_us"
 *               (predicted ranges that wrote to the shadow -- data
 *               or zeroes, whole or cut short by a client -- and a
 *               running median of their time from queued to copied),
 *               "requests_dropped", "requests_retried" (failed
 *               requested ranges queued again: with the sweep off),
 *               "cut_short" (copies begun at
 *               idle speed that stopped early when a client turned up) },
 *   "buffers": { "reused", "allocated" (copy and write buffers taken
 *               from the pool and malloc'd fresh), "idle_bytes"
 *               (kept for reuse now), "limit" (the most kept; bufpool.h) },
 *   "errors": { "origin": n, "shadows": [ { "uri", "connected",
 *               "connections", "connections_up", "errors",
 *               "reconnects", "retries", "replays" (times the
 *               updates it had not flushed were written again after a
 *               lost connection), "replayed" (updates so written),
 *               "updates_lost" (true once updates it acknowledged may
 *               be lost for good: every flush fails until restart),
 *               "latency_us", "bytes_read", "bytes_written" } ] },
 *   "verify": { "state": "idle"|"running"|"done"|"failed", "verified",
 *               "blocks_checked", "blocks_total", "mismatches",
 *               "recopied", "message" },
 *   "commits": { "count", "failures", "last_ms" },
 *   "state": null | { "dir", "journal_bytes", "snapshot_bytes" }
 * Sizes are in bytes, rates in bytes/s, ratios (hit_ratio, precision,
 * accuracy) fractions 0..1.  Clients must tolerate missing and extra
 * fields.
 */

#ifndef NBDSHADOW_CONTROL_H
#define NBDSHADOW_CONTROL_H

#include <stddef.h>

/* Handle one request.  argv[0] is the verb, argc >= 1; words were split
 * on spaces and are non-empty.  Returns 0 with *reply set to a malloc'd
 * payload (or NULL for a bare "ok"), or -1 with *reply set to a malloc'd
 * error message.  Called on the control thread; may block briefly (a
 * cutover pauses client I/O and commits).
 */
typedef int (*control_handler_fn) (void *opaque, int argc, char **argv,
                                   char **reply);

struct control;

/* Create the socket at path (replacing a stale socket file, refusing to
 * replace anything else), mode 0600, and start serving on a thread.
 * Reports and returns NULL on error.
 *
 * The socket is bound in a private temporary directory beside path and
 * renamed into place, so path's directory must be writable.  It starts a
 * thread: in the filter, call it from .after_fork, never earlier.
 */
extern struct control *control_start (const char *path,
                                      control_handler_fn handler,
                                      void *opaque);

/* Stop the thread, close every connection, unlink the socket. */
extern void control_stop (struct control *c);

#endif /* NBDSHADOW_CONTROL_H */
