import { TandemError } from './errors.js';

/**
 * Loads an optional peer dependency on first use. Broker and store clients are optional
 * peers: an application that uses RabbitMQ should not install the NATS client. A missing one
 * becomes TANDEM_ERR_MISSING_DEPENDENCY naming the package, not a bare ERR_MODULE_NOT_FOUND.
 * `load` must be a literal `() => import('pkg')` so the bundler and the types see it.
 */
export async function loadOptional<T>(pkg: string, usedFor: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && String((err as Error).message).includes(pkg)) {
      throw new TandemError('TANDEM_ERR_MISSING_DEPENDENCY', `install ${pkg} to use ${usedFor} (npm install ${pkg})`, { cause: err });
    }
    throw err;
  }
}
