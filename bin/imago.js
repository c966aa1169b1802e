#!/usr/bin/env node
// Entry point: Imago runs its TypeScript sources through its loader (tsx, see src/loader/register.js;
// no build step), so user-written TypeScript transforms and plans load the same way.
import '../src/loader/register.js';

await import('../src/cli/main.ts');
