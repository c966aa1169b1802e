/** Secrets never reach logs or reports: connection passwords and bearer tokens are masked. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]+:)[^@]*@/, '$1***@');
}

export function redactText(text: string): string {
  return text
    .replace(/(postgres(?:ql)?:\/\/[^:/@\s]+:)[^@\s]*@/g, '$1***@')
    .replace(/(password=)\S+/gi, '$1***')
    .replace(/(Bearer\s+)\S+/gi, '$1***');
}
