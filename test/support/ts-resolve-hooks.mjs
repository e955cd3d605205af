// Lets plain Node (24, which strips TypeScript types itself) run the project's .ts sources in a child
// process: their imports name './x.js' as tsc wants, and this maps such a specifier to './x.ts' when no
// .js file exists. Use: node --import ./test/support/ts-resolve-hooks.mjs script.ts
import { registerHooks } from 'node:module';

registerHooks({
  resolve(specifier, context, nextResolve) {
    try {
      return nextResolve(specifier, context);
    } catch (error) {
      const relative = specifier.startsWith('./') || specifier.startsWith('../') || specifier.startsWith('/') || specifier.startsWith('file:');
      if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !relative || !specifier.endsWith('.js')) throw error;
      return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
    }
  },
});
