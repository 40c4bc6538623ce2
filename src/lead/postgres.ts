import { TandemError } from '../core/errors.js';
import { loadOptional } from '../core/optional.js';
import * as rules from '../core/options.js';
import type { LeaseStore, Term } from './types.js';
import { DEFAULT_LEAD_TTL_MS } from './election.js';

/** The parts of pg the lease store uses (pg's Pool and PoolClient satisfy them; see events/inbox-postgres.ts). */
interface PgResult { rows: unknown[]; rowCount: number | null }
interface PgClient {
  query(text: string, values?: unknown[]): Promise<PgResult>;
  release(err?: Error | boolean): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
  off(event: 'error', listener: (err: Error) => void): unknown;
}
interface PgPool { query(text: string, values?: unknown[]): Promise<PgResult>; connect(): Promise<PgClient>; end(): Promise<void> }

export interface PostgresLeaseStoreOptions {
  /** Default `postgres://postgres@127.0.0.1:5432/postgres`. Ignored when `pool` is given. */
  connectionString?: string;
  /** A pg Pool to use (not ended by close()). */
  pool?: PgPool;
  /** Default `tandem_leases`; created if missing. */
  table?: string;
}

const SPEC: rules.OptionSpec = {
  connectionString: rules.string,
  pool: rules.methods('query', 'connect', 'end'),
  table: rules.pattern(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case SQL identifier (letters, digits, _; at most 63)'),
};

/**
 * Leases in a PostgreSQL table, one row per name: its holder, its fencing token and when it
 * expires — by the server's clock (clock_timestamp()), the one clock every candidate shares.
 * Not advisory locks: a session lock outlives a frozen holder (its connection stays open), so
 * a SIGSTOPped leader would keep it forever.
 */
export async function postgresLeaseStore(options: PostgresLeaseStoreOptions = {}): Promise<PostgresLeaseStore> {
  const o = rules.parseOptions<PostgresLeaseStoreOptions>('postgresLeaseStore()', options, SPEC, { table: 'tandem_leases' });
  let pool = o.pool;
  if (pool === undefined) {
    const pg = await loadOptional('pg', 'the PostgreSQL lease store', () => import('pg'));
    // query_timeout: a cut connection must not hold a renewal forever (the leader also stops on its own deadline).
    const own = new pg.default.Pool({ connectionString: o.connectionString ?? 'postgres://postgres@127.0.0.1:5432/postgres', max: 4, query_timeout: 5000 });
    // An idle client the server closed is dropped by the pool (the next query gets a new one);
    // unheard, its error would end the process — a database failover must not take the leader down.
    own.on('error', () => {});
    pool = own as unknown as PgPool;
  }
  const table = o.table!;
  await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (name text PRIMARY KEY, holder text, token bigint NOT NULL, expires_at timestamptz NOT NULL)`);
  return new PostgresLeaseStore(pool, o.pool === undefined, table);
}

export class PostgresLeaseStore implements LeaseStore {
  constructor(
    readonly pool: PgPool,
    private readonly owned: boolean,
    readonly table: string,
  ) {}

  async acquire(name: string, holder: string, ttlMs: number): Promise<number | undefined> {
    const r = await this.pool.query(
      `INSERT INTO ${this.table} AS l (name, holder, token, expires_at) VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')
       ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, token = l.token + 1, expires_at = EXCLUDED.expires_at
       WHERE l.holder IS NULL OR l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp()
       RETURNING token`,
      [name, holder, ttlMs],
    );
    const row = r.rows[0] as { token: string } | undefined;
    return row === undefined ? undefined : Number(row.token);
  }

  async renew(name: string, holder: string, token: number, ttlMs: number): Promise<boolean> {
    const r = await this.pool.query(
      `UPDATE ${this.table} SET expires_at = clock_timestamp() + $4 * interval '1 millisecond'
       WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > clock_timestamp()`,
      [name, holder, token, ttlMs],
    );
    return r.rowCount === 1;
  }

  async release(name: string, holder: string, token: number): Promise<void> {
    await this.pool.query(`UPDATE ${this.table} SET holder = NULL, expires_at = clock_timestamp() WHERE name = $1 AND holder = $2 AND token = $3`, [name, holder, token]);
  }

  /**
   * Runs `fn` in a transaction that commits only under `term`'s token: the lease row is read
   * FOR SHARE, so a new leader's takeover (which updates the row) waits for this transaction,
   * and a transaction that starts after it finds a greater token and is refused with
   * TANDEM_ERR_FENCED — however late a resumed or cut-off old leader tries. Write the side
   * effects that must happen once through `tx`. `ttlMs`: the lease length the candidates use.
   */
  async fenced<T>(term: Pick<Term, 'name' | 'token'>, fn: (tx: PgClient) => Promise<T>, ttlMs = DEFAULT_LEAD_TTL_MS): Promise<T> {
    const client = await this.pool.connect();
    // The server ends a session it finds idle in this transaction too long (below): its FATAL
    // arrives as an 'error' event of the held client — a process frozen here gets it when it
    // resumes — which, unheard, would be an uncaught exception. The next query fails with it.
    let ended: Error | undefined;
    const onEnded = (err: Error) => { ended = err; };
    client.on('error', onEnded);
    try {
      await client.query('BEGIN');
      // A leader frozen inside this transaction would hold the row lock, and with it every
      // takeover: the server ends a transaction left idle longer than a lease.
      await client.query(`SET LOCAL idle_in_transaction_session_timeout = ${Math.max(1, Math.round(ttlMs))}`);
      const r = await client.query(`SELECT token FROM ${this.table} WHERE name = $1 FOR SHARE`, [term.name]);
      const latest = Number((r.rows[0] as { token: string } | undefined)?.token ?? 0);
      if (latest !== term.token) {
        throw new TandemError('TANDEM_ERR_FENCED', `term ${term.token} of ${term.name} is over: the lease is at token ${latest}`);
      }
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((e: Error) => { ended ??= e; });
      throw err;
    } finally {
      client.off('error', onEnded);
      client.release(ended); // a broken client is discarded, not pooled
    }
  }

  async close(): Promise<void> {
    if (this.owned) await this.pool.end();
  }
}
