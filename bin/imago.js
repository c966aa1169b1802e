#!/usr/bin/env node
// Entry point: Imago runs its TypeScript sources through tsx (no build step), so user-written
// TypeScript transforms and plans load the same way.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
