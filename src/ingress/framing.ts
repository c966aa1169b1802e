/**
 * Message checks llhttp leaves to the application, for both sides of the proxy: the only transfer
 * coding the proxy implements is chunked (a body in another coding could not be re-framed, so as nginx
 * it is refused: 501 to a client, 502 for a backend), an HTTP/1.1 request names exactly one Host
 * (RFC 9112 §3.2, as node:http's requireHostHeader), and an absolute-form target is forwarded in origin
 * form.
 */

/** Whether a Transfer-Encoding value (all its fields joined by commas) lists codings other than chunked. */
export function otherCodings(transferEncoding: string): boolean {
  for (const coding of transferEncoding.split(',')) {
    if (coding.trim().toLowerCase() !== 'chunked') return true;
  }
  return false;
}

/** The answer refusing a request head, or undefined when it is acceptable. */
export function headRefusal(
  major: number,
  minor: number,
  hosts: number,
  transferEncoding: string | undefined,
): { status: number; text: string } | undefined {
  if (transferEncoding !== undefined && otherCodings(transferEncoding))
    return { status: 501, text: 'Not Implemented' };
  if (hosts > 1 || (hosts === 0 && major === 1 && minor >= 1)) return { status: 400, text: 'Bad Request' };
  return undefined;
}

const ABSOLUTE = /^https?:\/\/[^/?#]*/i;

/** `http://host/x?y` → `/x?y` (a proxy's upstream expects origin form); other targets unchanged. */
export function originForm(target: string): string {
  if (target.charCodeAt(0) === 47 /* '/' */) return target;
  const authority = ABSOLUTE.exec(target);
  if (authority === null) return target;
  const rest = target.slice(authority[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** Why a backend's response head cannot be relayed, or undefined (the request was never an upgrade). */
export function responseFault(status: number, headers: readonly string[]): string | undefined {
  if (status < 100) return `status ${status}`;
  if (status === 101) return '101 Switching Protocols to a request that asked for no upgrade';
  let te: string | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding')
      te = te === undefined ? (headers[i + 1] as string) : `${te},${headers[i + 1] as string}`;
  }
  if (te !== undefined && otherCodings(te)) return `unsupported transfer-encoding '${te}'`;
  return undefined;
}
