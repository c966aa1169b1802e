/** Secrets never reach logs or reports: connection passwords and bearer tokens are masked. */
export function redactUrl(url: string): string {
  // Up to the last '@': a password may contain '@' (or '/') itself; masking too much is the safe side.
  return url.replace(/(\/\/[^:/@\s]+:)\S*@/, '$1***@');
}

export function redactText(text: string): string {
  return text
    .replace(/(postgres(?:ql)?:\/\/[^:/@\s]+:)\S*@/g, '$1***@')
    .replace(/(password=)\S+/gi, '$1***')
    .replace(/(Bearer\s+)\S+/gi, '$1***');
}
