/**
 * A failure that belongs to a dependency, not to the instance that reports it.
 *
 * When service A answers 5xx because the service B it calls is down, A itself is healthy: every
 * sibling of A shares B, so retrying the request on another A instance only multiplies the load
 * on a dependency that is already failing, and ejecting A would take healthy callers out of
 * rotation because of someone else's outage — the classic cascading failure. An instance says
 * "this one is my dependency's" with a response header naming the dependency; the engine (the
 * gateway and tandem/client alike) then neither counts the answer against the instance nor
 * retries it elsewhere, and passes it on at once.
 *
 * tandem/node sets the header by itself on a 5xx answered after a tandem/client call failed
 * while handling the request; errors from tandem/client carry it in `headers` (which express,
 * koa and other http-errors-style handlers copy onto the response); and an application can set
 * it for any dependency (a database, say) with `res.setHeader(FAILED_DEPENDENCY_HEADER, name)`.
 */
export const FAILED_DEPENDENCY_HEADER = 'x-tandem-failed-dependency';

const NAME_LENGTH = FAILED_DEPENDENCY_HEADER.length;

/**
 * The dependency a 5xx response names in its raw headers ([name, value, …] as undici gives
 * them), or undefined. Only called for 5xx answers: the common path never scans.
 */
export function failedDependencyOf(rawHeaders: readonly Buffer[]): string | undefined {
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length !== NAME_LENGTH) continue;
    let same = true;
    for (let j = 0; j < NAME_LENGTH; j++) {
      // OR 0x20 folds A-Z onto a-z and leaves '-' alone.
      if ((name[j]! | 0x20) !== FAILED_DEPENDENCY_HEADER.charCodeAt(j)) {
        same = false;
        break;
      }
    }
    if (same) return rawHeaders[i + 1]!.toString('latin1').trim() || undefined;
  }
  return undefined;
}

/** True for an answer that reports its dependency's failure (a 5xx carrying the header). */
export function isDependencyFailure(statusCode: number, rawHeaders: readonly Buffer[]): boolean {
  return statusCode >= 500 && failedDependencyOf(rawHeaders) !== undefined;
}
