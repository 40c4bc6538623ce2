import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_RETRY_POLICY,
  FAILURE_KINDS,
  isIdempotent,
  mayRetry,
  drawsOnBudget,
  neverSent,
  type FailureKind,
} from '../src/upstream/resilience/retry-policy.js';

const IDEMPOTENT = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'];
const NOT_IDEMPOTENT = ['POST', 'PATCH', 'CONNECT', 'PROPFIND', 'get', 'Put', ''];

/**
 * The expected answer, written out per failure rather than derived: [idempotent method,
 * other method] when the body is replayable. A body that cannot be replayed never retries.
 */
const TABLE: Record<FailureKind, readonly [idempotent: boolean, other: boolean]> = {
  'connect': [true, true],
  'reset-before-send': [true, true],
  'refused': [true, true],
  'stale-connection': [true, true],
  'reset': [true, false],
  'timeout': [true, false],
  'status-502': [true, false],
  'status-503': [true, false],
  'status-504': [true, false],
  'grpc-unavailable': [true, false],
};

describe('retry policy', () => {
  test('the idempotent methods are those of RFC 9110', () => {
    assert.deepEqual([...DEFAULT_RETRY_POLICY.idempotentMethods], IDEMPOTENT);
    assert.ok(Object.isFrozen(DEFAULT_RETRY_POLICY));
    assert.ok(Object.isFrozen(DEFAULT_RETRY_POLICY.idempotentMethods));
    for (const method of IDEMPOTENT) assert.equal(isIdempotent(method), true, method);
    for (const method of NOT_IDEMPOTENT) assert.equal(isIdempotent(method), false, JSON.stringify(method));
  });

  test('the table covers every failure kind', () => {
    assert.deepEqual(Object.keys(TABLE).sort(), [...FAILURE_KINDS].sort());
  });

  test('neverSent: only connect failures, resets before sending, refused streams and stale connections', () => {
    for (const failure of FAILURE_KINDS) {
      assert.equal(neverSent(failure), failure === 'connect' || failure === 'reset-before-send' || failure === 'refused' || failure === 'stale-connection', failure);
    }
  });

  test('drawsOnBudget: all but connect failures, refused streams and stale connections (they add no load)', () => {
    for (const failure of FAILURE_KINDS) {
      assert.equal(drawsOnBudget(failure), failure !== 'connect' && failure !== 'refused' && failure !== 'stale-connection', failure);
    }
  });

  describe('method × failure × body replayable', () => {
    for (const failure of FAILURE_KINDS) {
      const [idempotent, other] = TABLE[failure];
      for (const method of [...IDEMPOTENT, ...NOT_IDEMPOTENT]) {
        const allowed = IDEMPOTENT.includes(method) ? idempotent : other;
        test(`${method || '(empty)'} after ${failure}: ${allowed ? 'retry' : 'no retry'} when replayable; never when not`, () => {
          assert.equal(mayRetry({ method, failure, bodyReplayable: true }), allowed);
          assert.equal(mayRetry({ method, failure, bodyReplayable: false }), false);
        });
      }
    }
  });

  test('a POST or PATCH that may have been processed is never re-sent', () => {
    for (const method of ['POST', 'PATCH']) {
      for (const failure of ['reset', 'timeout', 'status-502', 'status-503', 'status-504'] as const) {
        assert.equal(mayRetry({ method, failure, bodyReplayable: true }), false, `${method} ${failure}`);
      }
      assert.equal(mayRetry({ method, failure: 'connect', bodyReplayable: true }), true);
      assert.equal(mayRetry({ method, failure: 'reset-before-send', bodyReplayable: true }), true);
    }
  });
});
