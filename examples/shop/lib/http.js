// Two helpers for plain node:http handlers.

/** Sends `body` as JSON. */
export function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(`${JSON.stringify(body)}\n`);
}

/** The request's body parsed as JSON (undefined when it is not JSON). */
export async function readJson(req) {
  let text = '';
  for await (const chunk of req.setEncoding('utf8')) text += chunk;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
