/**
 * The node flags that load Imago's TypeScript through its loader (register.js: tsx, with Imago's own
 * files transformed without keep-names wrappers), for every Node process Imago forks from source.
 */
export const TS_LOADER: readonly string[] = ['--import', new URL('./register.js', import.meta.url).href];
