import { randomUUID } from 'node:crypto';
import { TandemError } from '../core/errors.js';
import { DEFAULT_REDIS_INBOX_OPTIONS, parseRedisInboxOptions } from './options.js';
import type { Inbox } from './inbox.js';
import { loadOptional } from '../core/optional.js';

type IoRedisMulti = import('ioredis').ChainableCommander;

/**
 * The parts of `ioredis` that tandem uses, declared here so that tandem's types never import
 * `ioredis` (an optional peer: an application without it must still type-check). An ioredis
 * `Redis` satisfies `RedisLike<ChainableCommander>`; at run time they are ioredis' own objects.
 */
export interface RedisMultiLike {
  set(key: string, value: string, px: 'PX', milliseconds: number): unknown;
  exec(): Promise<Array<[error: Error | null, result: unknown]> | null>;
}

/** An ioredis client; `M` is what `multi()` returns (ioredis: `ChainableCommander`). */
export interface RedisLike<M extends RedisMultiLike = RedisMultiLike> {
  set(key: string, value: string, px: 'PX', milliseconds: number, nx: 'NX'): Promise<'OK' | null>;
  get(key: string): Promise<string | null>;
  multi(): M;
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): void;
}

/**
 * A MULTI the effect queues its Redis writes on; they commit with the inbox record in one EXEC.
 * At run time it is ioredis' `ChainableCommander`, with every command: pass an ioredis client
 * as `client` (the type follows it) or name it, `RedisInbox.connect<ChainableCommander>()`.
 */
export type RedisMulti = RedisMultiLike;

export interface RedisInboxOptions<M extends RedisMultiLike = RedisMultiLike> {
  /** Default `redis://127.0.0.1:6379`. Ignored when `client` is given. */
  url?: string;
  /** An ioredis client to use (not closed by close()). */
  client?: RedisLike<M>;
  /** Key prefix; keys are `<prefix>:<group>:<id>`. Default `tandem:inbox`. */
  prefix?: string;
  retention?: number;
  /** How long a claim holds while its effect runs; a claim of a dead consumer expires after it. Must exceed the handler's run time. */
  lease?: number;
}

const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * Inbox in Redis. A message is claimed with SET NX and a lease; the effect's Redis writes
 * (queued on the MULTI it receives) commit in the same EXEC that marks the message done, so
 * for effects in Redis the outcome is exactly once. Effects elsewhere run at least once if the
 * consumer dies between the effect and the EXEC; a duplicate that arrives while another
 * consumer holds the claim waits for its outcome.
 */
export class RedisInbox<M extends RedisMultiLike = RedisMulti> implements Inbox<M> {
  private constructor(
    readonly redis: RedisLike<M>,
    private readonly owned: boolean,
    private readonly prefix: string,
    private readonly retention: number,
    private readonly lease: number,
  ) {}

  /** `M`, the effect's MULTI, follows `client`'s type; see `RedisMulti`. */
  static async connect<M extends RedisMultiLike = RedisMulti>(redisOptions: RedisInboxOptions<M> = {}): Promise<RedisInbox<M>> {
    const options = parseRedisInboxOptions(redisOptions) as Readonly<RedisInboxOptions<M> & typeof DEFAULT_REDIS_INBOX_OPTIONS>;
    let client = options.client;
    if (!client) {
      const mod = await loadOptional('ioredis', 'the Redis inbox', () => import('ioredis'));
      // ioredis' module.exports is the client class, whose `default` is itself, in every 5.x and
      // 6.x; the named `Redis` export only came with 5.3.
      const made = new mod.default.default(options.url, { maxRetriesPerRequest: 3, lazyConnect: true });
      await made.connect();
      const checked: RedisLike<IoRedisMulti> = made;
      // Its multi() is a ChainableCommander, the type a caller's `M` names (or RedisMultiLike).
      client = checked as unknown as RedisLike<M>;
    }
    return new RedisInbox<M>(client, options.client === undefined, options.prefix, options.retention, options.lease);
  }

  async once(group: string, id: string, effect: (tx: M) => Promise<void> | void): Promise<'done' | 'duplicate'> {
    const key = `${this.prefix}:${group}:${id}`;
    const claim = `running:${randomUUID()}`;
    for (let wait = 10; ; wait = Math.min(wait * 2, 200)) {
      if ((await this.redis.set(key, claim, 'PX', this.lease, 'NX')) === 'OK') break;
      const state = await this.redis.get(key);
      if (state === 'done') return 'duplicate';
      if (state !== null) await sleep(wait); // another consumer is on it: wait for its outcome or its lease to end
    }
    try {
      const multi = this.redis.multi();
      await effect(multi);
      multi.set(key, 'done', 'PX', this.retention);
      const results = await multi.exec();
      const failed = results?.find(([err]) => err !== null);
      if (results === null || failed) throw failed?.[0] ?? new TandemError('TANDEM_ERR_STORE_FAILED', 'Redis MULTI aborted (a watched key changed)');
      return 'done';
    } catch (err) {
      await this.redis.eval(RELEASE, 1, key, claim).catch(() => {});
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.owned) await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
