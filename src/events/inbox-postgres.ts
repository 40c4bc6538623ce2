import { DEFAULT_POSTGRES_INBOX_OPTIONS, parsePostgresInboxOptions } from './options.js';
import type { Inbox } from './inbox.js';
import { loadOptional } from '../core/optional.js';

type PgPoolClient = import('pg').PoolClient;

/**
 * The parts of `pg` that tandem uses, declared here so that tandem's types never import `pg`
 * (an optional peer: an application without it must still type-check). pg's `Pool` and
 * `PoolClient` satisfy them; at run time they are pg's own objects.
 */
export interface PgResultLike {
  rows: unknown[];
  rowCount: number | null;
}

/** A pooled connection: pg's `PoolClient`. */
export interface PgClientLike {
  query(text: string, values?: unknown[]): Promise<PgResultLike>;
  release(err?: Error | boolean): void;
  on(event: 'notification', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  off(event: 'error', listener: (err: Error) => void): unknown;
}

/** pg's `Pool`; `C` is what `connect()` hands out (pg: `PoolClient`). */
export interface PgPoolLike<C extends PgClientLike = PgClientLike> {
  query(text: string, values?: unknown[]): Promise<PgResultLike>;
  connect(): Promise<C>;
  end(): Promise<void>;
}

/**
 * The transaction the effect writes through; it commits together with the inbox row. Its
 * `query(text, values)` is all most effects need; for pg's full `PoolClient` type, name it:
 * `PostgresInbox.connect<PoolClient>({ pool })`.
 */
export type PgTransaction = PgClientLike;

export interface PostgresInboxOptions<Tx extends PgClientLike = PgClientLike> {
  /** Default `postgres://postgres@127.0.0.1:5432/postgres`. Ignored when `pool` is given. */
  connectionString?: string;
  /** A pg Pool to use (not ended by close()). */
  pool?: PgPoolLike<Tx>;
  /** Default `tandem_inbox`; created if missing. */
  table?: string;
  retention?: number;
}

/** Creates a pg Pool, loading `pg` on first use. */
export async function createPgPool(connectionString: string | undefined, usedFor: string, max = 10): Promise<PgPoolLike> {
  const pg = await loadOptional('pg', usedFor, () => import('pg'));
  const pool = new pg.default.Pool({ connectionString: connectionString ?? 'postgres://postgres@127.0.0.1:5432/postgres', max });
  // An idle client the server closed (a restart, a failover, pg_terminate_backend) is dropped by
  // the pool and the next query gets a new one; without a listener its error would be thrown as
  // an uncaught exception and end the process.
  pool.on('error', () => {});
  return pool as PgPoolLike<PgPoolClient>;
}

/**
 * Inbox in PostgreSQL. `once` opens a transaction, inserts (group, id) — a duplicate finds the
 * row (or waits on the row lock of a concurrent twin, then finds it) — runs the effect on the
 * same transaction and commits: the effect and the record commit together, exactly once.
 * A consumer that dies mid-transaction leaves nothing behind.
 */
export class PostgresInbox<Tx extends PgClientLike = PgTransaction> implements Inbox<Tx> {
  private readonly purger: NodeJS.Timeout;

  private constructor(
    readonly pool: PgPoolLike<Tx>,
    private readonly owned: boolean,
    readonly table: string,
    private readonly retention: number,
  ) {
    this.purger = setInterval(() => void this.purge().catch(() => {}), Math.min(retention, 3600_000));
    this.purger.unref();
  }

  /**
   * `Tx` is the type of the effect's transaction, `PgTransaction` unless named: with pg's types
   * installed, `connect<PoolClient>()` gives effects pg's full `PoolClient` (what the pool tandem
   * makes, or a pg `Pool` passed as `pool`, hands out).
   */
  static async connect<Tx extends PgClientLike = PgTransaction>(pgOptions: PostgresInboxOptions<Tx> = {}): Promise<PostgresInbox<Tx>> {
    const options = parsePostgresInboxOptions(pgOptions) as Readonly<PostgresInboxOptions<Tx> & typeof DEFAULT_POSTGRES_INBOX_OPTIONS>;
    const { table, retention } = options;
    // The pool tandem makes hands out pg's PoolClient, which is what a caller's `Tx` names.
    const pool = options.pool ?? ((await createPgPool(options.connectionString, 'the PostgreSQL inbox')) as PgPoolLike<Tx>);
    await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (grp text NOT NULL, id text NOT NULL, processed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (grp, id))`);
    return new PostgresInbox<Tx>(pool, options.pool === undefined, table, retention);
  }

  async once(group: string, id: string, effect: (tx: Tx) => Promise<void> | void): Promise<'done' | 'duplicate'> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // The server may end the session while the effect runs (a restart, a terminated backend):
    // its FATAL comes as an 'error' event of the held client, an uncaught exception unless
    // heard. The next query fails with it; the client is then released as broken.
    const onEnded = (err: Error) => { broken = err; };
    client.on('error', onEnded);
    try {
      await client.query('BEGIN');
      const inserted = await client.query(`INSERT INTO ${this.table} (grp, id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [group, id]);
      if (inserted.rowCount === 0) {
        await client.query('ROLLBACK');
        return 'duplicate';
      }
      await effect(client);
      await client.query('COMMIT');
      return 'done';
    } catch (err) {
      await client.query('ROLLBACK').catch((e: Error) => (broken = e));
      throw err;
    } finally {
      client.off('error', onEnded);
      client.release(broken);
    }
  }

  /** Deletes records older than the retention window (also runs on a timer). */
  async purge(): Promise<number> {
    const r = await this.pool.query(`DELETE FROM ${this.table} WHERE processed_at < now() - make_interval(secs => $1)`, [this.retention / 1000]);
    return r.rowCount ?? 0;
  }

  async close(): Promise<void> {
    clearInterval(this.purger);
    if (this.owned) await this.pool.end();
  }
}
