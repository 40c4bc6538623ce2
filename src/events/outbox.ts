import type { Bus } from './bus.js';
import { parsePostgresOutboxOptions, parseRelayOptions } from './options.js';
import { checkTopic, createEnvelope, type Envelope, type PublishOptions } from './envelope.js';
import { createPgPool, type PgPoolLike } from './inbox-postgres.js';
import { lead, type Leader } from '../lead/election.js';
import { postgresLeaseStore, type PostgresLeaseStore } from '../lead/postgres.js';
import type { Term } from '../lead/types.js';

/** Anything that runs a query: the caller's transaction client. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<unknown>;
}

export interface PostgresOutboxOptions {
  /** Default `postgres://postgres@127.0.0.1:5432/postgres`. Ignored when `pool` is given. */
  connectionString?: string;
  /** A pg Pool to use (not ended by close()). */
  pool?: PgPoolLike;
  /** Default `tandem_outbox`; created if missing. */
  table?: string;
}

export interface RelayOptions {
  /** Idle poll interval (a NOTIFY from add() wakes the relay sooner). Default 100 ms. */
  pollInterval?: number;
  batchSize?: number;
  /** Sent rows are deleted after this long. Default 24 h. */
  retention?: number;
  onError?: (err: unknown) => void;
}


/**
 * The transactional outbox in PostgreSQL. `add(tx, …)` writes the event in the caller's
 * transaction, so it exists if and only if the business change committed. A relay publishes
 * unsent rows and marks them sent. With the inbox on the consumer side the effect happens
 * once end to end: a row published twice (the relay died between the broker's confirm and the
 * mark) carries the same message id both times.
 */
export class PostgresOutbox {
  private constructor(
    readonly pool: PgPoolLike,
    private readonly owned: boolean,
    readonly table: string,
  ) {}

  static async connect(outboxOptions: PostgresOutboxOptions = {}): Promise<PostgresOutbox> {
    const options = parsePostgresOutboxOptions(outboxOptions);
    const { table } = options;
    const pool = options.pool ?? (await createPgPool(options.connectionString, 'the PostgreSQL outbox'));
    await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (seq bigserial PRIMARY KEY, id text NOT NULL, topic text NOT NULL, envelope jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz)`);
    await pool.query(`CREATE INDEX IF NOT EXISTS ${table}_unsent ON ${table} (seq) WHERE sent_at IS NULL`);
    return new PostgresOutbox(pool, options.pool === undefined, table);
  }

  get channel(): string {
    return `${this.table}_added`;
  }

  /** Writes an event through `tx` (the caller's open transaction). Returns its envelope. */
  async add<T>(tx: Queryable, topic: string, payload: T, options?: PublishOptions): Promise<Envelope<T>> {
    checkTopic(topic);
    const envelope = createEnvelope(topic, payload, options);
    await tx.query(`WITH ins AS (INSERT INTO ${this.table} (id, topic, envelope) VALUES ($1, $2, $3) RETURNING 1) SELECT pg_notify($4, '') FROM ins`, [envelope.id, topic, JSON.stringify(envelope), this.channel]);
    return envelope;
  }

  /** Rows not yet published. */
  async pending(): Promise<number> {
    const r = await this.pool.query(`SELECT count(*)::int AS n FROM ${this.table} WHERE sent_at IS NULL`);
    return (r.rows[0] as { n: number }).n;
  }

  /** Starts a relay publishing to `bus`. Several may run (one per process); one works at a time. */
  relay(bus: Pick<Bus, 'publishEnvelope'>, options?: RelayOptions): OutboxRelay {
    return new OutboxRelay(this, bus, options);
  }

  async close(): Promise<void> {
    if (this.owned) await this.pool.end();
  }
}

/**
 * Publishes an outbox's rows. Only the leader of the outbox's lease works (`tandem-ha/lead`, on
 * the outbox's own database: a row in `tandem_leases`); the others stand by as candidates. When
 * the leader dies, freezes or loses its database, its lease runs out and a standby takes over
 * within about 2 s — unlike a session advisory lock, which a frozen holder keeps for as long as
 * its connection stays open. Rows are marked sent in a fenced transaction: a relay whose term is
 * over cannot mark them (a row it published late is published again by the new leader, with the
 * same message id: the consumers' inbox keeps the effect single).
 */
export class OutboxRelay {
  state: 'standby' | 'active' | 'closed' = 'standby';
  /** Rows published (broker-confirmed and marked sent) by this relay. */
  relayed = 0;
  private leader: Leader | undefined;
  private wake: (() => void) | undefined;
  private readonly started: Promise<void>;
  private readonly o: Required<RelayOptions>;

  constructor(
    private readonly outbox: PostgresOutbox,
    private readonly bus: Pick<Bus, 'publishEnvelope'>,
    options?: RelayOptions,
  ) {
    this.o = parseRelayOptions(options);
    this.started = this.start();
  }

  private async start(): Promise<void> {
    try {
      const store = await postgresLeaseStore({ pool: this.outbox.pool });
      if (this.closed) return;
      this.leader = lead(`tandem-outbox:${this.outbox.table}`, { store, onError: this.o.onError }, (term) => this.work(term, store));
    } catch (err) {
      this.o.onError(err);
    }
  }

  private async work(term: Term, store: PostgresLeaseStore): Promise<void> {
    // LISTEN needs a session of its own: an add() wakes the relay before its poll interval.
    const listener = await this.outbox.pool.connect();
    listener.on('error', (err: Error) => this.o.onError(err));
    listener.on('notification', () => this.wake?.());
    let purgedAt = 0;
    try {
      await listener.query(`LISTEN ${this.outbox.channel}`);
      this.state = 'active';
      while (term.isLeader()) {
        try {
          const rows = (await this.outbox.pool.query(`SELECT seq, envelope FROM ${this.outbox.table} WHERE sent_at IS NULL ORDER BY seq LIMIT $1`, [this.o.batchSize])).rows as Array<{ seq: string; envelope: Envelope }>;
          if (rows.length > 0) {
            // Confirmed publishes in parallel; a row is marked only after its confirm. A failure leaves the batch for the next round.
            await Promise.all(rows.map((r) => this.bus.publishEnvelope(r.envelope)));
            await store.fenced(term, (tx) => tx.query(`UPDATE ${this.outbox.table} SET sent_at = now() WHERE seq = ANY($1::bigint[])`, [rows.map((r) => r.seq)]));
            this.relayed += rows.length;
          }
          if (Date.now() - purgedAt > 60_000) {
            purgedAt = Date.now();
            await this.outbox.pool.query(`DELETE FROM ${this.outbox.table} WHERE sent_at < now() - make_interval(secs => $1)`, [this.o.retention / 1000]);
          }
          if (rows.length < this.o.batchSize) await this.idle(this.o.pollInterval, term.signal);
        } catch (err) {
          if (!term.isLeader()) break;
          this.o.onError(err);
          await this.idle(this.o.pollInterval * 5, term.signal);
        }
      }
    } finally {
      if (!this.closed) this.state = 'standby';
      await listener.query(`UNLISTEN ${this.outbox.channel}`).catch(() => {});
      listener.release();
    }
  }

  private get closed(): boolean {
    return this.state === 'closed';
  }

  private async idle(ms: number, signal: AbortSignal): Promise<void> {
    if (this.closed || signal.aborted) return;
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => this.wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    await new Promise<void>((r) => {
      this.wake = r;
      timer = setTimeout(r, ms);
    });
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    this.wake = undefined;
  }

  /** Stops after the current batch and gives the lease up. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.wake?.();
    await this.started;
    // The lease store shares the outbox's pool: nothing of its own to close.
    await this.leader?.close();
  }
}
