// The test helpers that wait (helpers/wait.ts): they resolve on the event, and the guard ends a
// wait for something that never comes with an error naming it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { guarded, nextEvent, waitFor } from './helpers/wait.js';

test('waitFor resolves with the first truthy value, asked at once and again until it comes', async () => {
  let asked = 0;
  assert.equal(await waitFor('at once', () => 'now'), 'now');
  assert.equal(await waitFor('the third answer', () => (++asked === 3 ? asked : 0), { intervalMs: 1 }), 3);
});

test('the guard ends a wait for what never comes, naming it (and its state when given as a function)', async () => {
  let last = 'starting';
  await assert.rejects(waitFor('a state that never comes', () => false, { intervalMs: 1, guardMs: 5 }), /still waiting for a state that never comes after 5 ms \(the guard/);
  await assert.rejects(waitFor(() => `healthy (still ${last})`, () => { last = 'unhealthy'; return false; }, { intervalMs: 1, guardMs: 5 }), /still waiting for healthy \(still unhealthy\)/);
  await assert.rejects(guarded(new Promise(() => {}), 'an exit', 5), /still waiting for an exit after 5 ms/);
});

test('nextEvent resolves with the next emission; guarded passes a settled promise through', async () => {
  const emitter = new EventEmitter();
  const next = nextEvent(emitter, 'ready');
  emitter.emit('ready', 1, 2);
  assert.deepEqual(await next, [1, 2]);
  assert.equal(await guarded(Promise.resolve('done'), 'a value'), 'done');
  await assert.rejects(guarded(Promise.reject(new Error('boom')), 'a value'), /boom/);
});
