import { TandemError } from '../core/errors.js';
import { EVENTS_DEFAULTS } from './defaults.js';
import type { Inbox } from './inbox.js';
import { loadOptional } from './optional.js';

type Pool = import('pg').Pool;
/** The transaction the effect writes through; it commits together with the inbox row. */
export type PgTransaction = import('pg').PoolClient;

export interface PostgresInboxOptions {
  /** Default `postgres://postgres@127.0.0.1:5432/postgres`. Ignored when `pool` is given. */
  connectionString?: string;
  /** A pg Pool to use (not ended by close()). */
  pool?: Pool;
  /** Default `tandem_inbox`; created if missing. */
  table?: string;
  retention?: number;
}

export const SQL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Creates a pg Pool, loading `pg` on first use. */
export async function createPgPool(connectionString: string | undefined, usedFor: string, max = 10): Promise<Pool> {
  const pg = await loadOptional('pg', usedFor, () => import('pg'));
  return new pg.default.Pool({ connectionString: connectionString ?? 'postgres://postgres@127.0.0.1:5432/postgres', max });
}

/**
 * Inbox in PostgreSQL. `once` opens a transaction, inserts (group, id) — a duplicate finds the
 * row (or waits on the row lock of a concurrent twin, then finds it) — runs the effect on the
 * same transaction and commits: the effect and the record commit together, exactly once.
 * A consumer that dies mid-transaction leaves nothing behind.
 */
export class PostgresInbox implements Inbox<PgTransaction> {
  private readonly purger: NodeJS.Timeout;

  private constructor(
    readonly pool: Pool,
    private readonly owned: boolean,
    readonly table: string,
    private readonly retention: number,
  ) {
    this.purger = setInterval(() => void this.purge().catch(() => {}), Math.min(retention, 3600_000));
    this.purger.unref();
  }

  static async connect(options: PostgresInboxOptions = {}): Promise<PostgresInbox> {
    const table = options.table ?? 'tandem_inbox';
    if (!SQL_NAME.test(table)) throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `PostgresInbox: table ${JSON.stringify(table)} must be a lower-case SQL identifier`);
    const retention = options.retention ?? EVENTS_DEFAULTS.inboxRetention;
    const pool = options.pool ?? (await createPgPool(options.connectionString, 'the PostgreSQL inbox'));
    await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (grp text NOT NULL, id text NOT NULL, processed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (grp, id))`);
    return new PostgresInbox(pool, options.pool === undefined, table, retention);
  }

  async once(group: string, id: string, effect: (tx: PgTransaction) => Promise<void> | void): Promise<'done' | 'duplicate'> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
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
