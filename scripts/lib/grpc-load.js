// Open-loop gRPC load for the drill: unary Get calls at `rate` per second and Watch streams at
// `streamRate` per second, each sent at its scheduled time whatever happened to the earlier ones
// (as src/drill/open-loop.ts does for HTTP), latency measured from that scheduled time.
//
// The caller passes the two methods, so the same load runs through a grpc-js client (to a
// gateway or nginx) and through tandem/client:
//   unary(request, { deadline }, callback) → call       (grpc-js's signature)
//   watch(request, { deadline }) → readable stream with 'data', 'error', 'status', 'end'
// Every call has a deadline: a unary call not done within `unaryTimeoutMs` ends with
// DEADLINE_EXCEEDED (a failure); a stream not done `streamSlackMs` after it should have ended
// is a hang (the drill counts it: a stream must end, with an error if it was cut).
import { performance } from 'node:perf_hooks';
import { grpc, statusName } from './grpc-drill-service.js';

/** Starts the load; `stop()` stops scheduling and resolves with every result once all settled. */
export function grpcLoad(options) {
  const { unary, watch, rate, streamRate = 0, streamTicks = 40, streamIntervalMs = 50, unaryTimeoutMs = 5000, streamSlackMs = 6000, idPrefix = 'c' } = options;
  const state = { outstanding: 0, streamsOpen: 0, t0: performance.now() };
  const calls = [];
  const streams = [];
  let maxSendLagMs = 0;
  let stopped = false;
  let pending = 0;
  let onIdle = null;
  const settled = () => {
    pending--;
    if (pending === 0 && stopped && onIdle) onIdle();
  };

  const fireUnary = (i, sched) => {
    const lag = performance.now() - sched;
    if (lag > maxSendLagMs) maxSendLagMs = lag;
    const r = { t: Math.round(sched - state.t0), lat: null, code: null, details: '', instance: '' };
    calls.push(r);
    pending++;
    state.outstanding++;
    let done = false;
    const finish = (err, reply) => {
      if (done) return;
      done = true;
      r.lat = performance.now() - sched;
      r.code = err ? err.code ?? grpc.status.UNKNOWN : grpc.status.OK;
      if (err) r.details = String(err.details ?? err.message ?? '').slice(0, 200);
      else r.instance = reply?.instance ?? '';
      state.outstanding--;
      settled();
    };
    try {
      unary({ id: `${idPrefix}-${i}` }, { deadline: Date.now() + Math.max(1, unaryTimeoutMs - lag) }, finish);
    } catch (err) {
      finish({ code: grpc.status.INTERNAL, details: `call threw: ${err.message}` });
    }
  };

  const fireStream = (i, sched) => {
    const r = { t: Math.round(sched - state.t0), lat: null, code: null, details: '', messages: 0, instance: '', maxGapMs: 0 };
    streams.push(r);
    pending++;
    state.streamsOpen++;
    const expectedMs = streamTicks * streamIntervalMs;
    let last = performance.now();
    let done = false;
    const finish = (code, details) => {
      if (done) return;
      done = true;
      r.lat = performance.now() - sched;
      r.code = code;
      r.details = String(details ?? '').slice(0, 200);
      const gap = performance.now() - last;
      if (r.messages > 0 && gap > r.maxGapMs) r.maxGapMs = Math.round(gap);
      state.streamsOpen--;
      settled();
    };
    let call;
    try {
      call = watch({ id: `${idPrefix}-s${i}`, ticks: streamTicks, intervalMs: streamIntervalMs }, { deadline: Date.now() + expectedMs + streamSlackMs });
    } catch (err) {
      finish(grpc.status.INTERNAL, `call threw: ${err.message}`);
      return;
    }
    call.on('data', (tick) => {
      const now = performance.now();
      if (r.messages > 0 && now - last > r.maxGapMs) r.maxGapMs = Math.round(now - last);
      last = now;
      r.messages++;
      if (tick?.instance) r.instance = tick.instance;
    });
    call.on('error', (err) => finish(err.code ?? grpc.status.UNKNOWN, err.details ?? err.message));
    call.on('status', (s) => { if (s.code === grpc.status.OK) finish(grpc.status.OK, ''); });
    // grpc-js emits 'status' after 'end'; 'end' alone (no status) would leave it open: bounded by the deadline.
  };

  let iu = 0;
  let is = 0;
  const tick = () => {
    if (stopped) return;
    const elapsed = performance.now() - state.t0;
    const dueU = Math.floor((elapsed * rate) / 1000) + 1;
    while (iu < dueU) {
      fireUnary(iu, state.t0 + (iu * 1000) / rate);
      iu++;
    }
    if (streamRate > 0 && watch) {
      const dueS = Math.floor((elapsed * streamRate) / 1000) + 1;
      while (is < dueS) {
        fireStream(is, state.t0 + (is * 1000) / streamRate);
        is++;
      }
    }
    setTimeout(tick, 1);
  };
  tick();

  return {
    state,
    /** ms since the load's t0 (the time base of every result's `t`). */
    now: () => performance.now() - state.t0,
    stop() {
      stopped = true;
      // Every call has a deadline; the margin only guards against a call that never settles.
      const bound = Math.max(unaryTimeoutMs, streamTicks * streamIntervalMs + streamSlackMs) + 5000;
      const idle = pending === 0 ? Promise.resolve('idle') : new Promise((resolve) => { onIdle = () => resolve('idle'); });
      let timer;
      const hard = new Promise((resolve) => { timer = setTimeout(() => resolve('hard-stop'), bound); });
      return Promise.race([idle, hard]).then((how) => {
        clearTimeout(timer);
        for (const r of [...calls, ...streams]) if (r.code === null) { r.code = -1; r.details = 'never settled'; }
        return { calls, streams, maxSendLagMs, hardStopped: how === 'hard-stop' };
      });
    },
  };
}

export { statusName };
