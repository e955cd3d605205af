/**
 * The part of gitignore-style ("gitwildmatch") patterns that ASC MHL ignore lists use in practice:
 * `*`, `?`, `**`, `[...]`, a leading or inner '/' anchoring to the root, a trailing '/' for folders only,
 * `\` escapes. Negation (`!`) cannot be honoured by a plain matcher and such patterns are skipped.
 * As in gitwildmatch, a pattern that matches a folder also covers everything beneath it.
 */
export type IgnoreMatcher = (relPath: string, isDir: boolean) => boolean;

/**
 * The reference tool (ascmhl) ignores these when a generation lists no patterns, but a generation that
 * lists any replaces them; so each generation Shuttle writes lists them, or `ascmhl diff` would report the
 * manifests themselves as new files.
 */
export const ASCMHL_DEFAULT_IGNORE: readonly string[] = ['.DS_Store', 'ascmhl', 'ascmhl/'];

/** The patterns in force for a generation that lists `listed`: the reference tool's defaults if it lists none. */
export function effectiveIgnore(listed: readonly string[]): readonly string[] {
  return listed.length > 0 ? listed : ASCMHL_DEFAULT_IGNORE;
}

/**
 * The list a new generation records: the previous generation's patterns in force (the reference tool never
 * drops a pattern), the defaults, then `added`, each once, in that order.
 */
export function continuedIgnore(previous: readonly string[] | undefined, added: readonly string[]): string[] {
  return [...new Set([...effectiveIgnore(previous ?? []), ...ASCMHL_DEFAULT_IGNORE, ...added])];
}

interface Rule {
  re: RegExp;
  dirOnly: boolean;
}

function globToRegExpSource(glob: string): string {
  let s = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === '\\' && i + 1 < glob.length) {
      s += escapeRe(glob[++i]!);
    } else if (ch === '*') {
      if (glob[i + 1] === '*') {
        const atStart = i === 0 || glob[i - 1] === '/';
        const atEnd = i + 2 === glob.length || glob[i + 2] === '/';
        if (atStart && atEnd) {
          i++;
          if (glob[i + 1] === '/') {
            i++;
            s += '(?:.*/)?'; // "**/" : zero or more folders
          } else {
            s += '.*'; // trailing "**": everything below
          }
          continue;
        }
      }
      s += '[^/]*';
    } else if (ch === '?') {
      s += '[^/]';
    } else if (ch === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) {
        s += '\\[';
      } else {
        let body = glob.slice(i + 1, close);
        if (body.startsWith('!')) body = `^${body.slice(1)}`;
        s += `[${body.replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else {
      s += escapeRe(ch);
    }
  }
  return s;
}

function escapeRe(ch: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(ch) ? `\\${ch}` : ch;
}

export function compileIgnore(patterns: readonly string[]): IgnoreMatcher {
  const rules: Rule[] = [];
  for (const raw of patterns) {
    let p = raw.trim();
    if (p === '' || p.startsWith('#') || p.startsWith('!')) continue;
    const dirOnly = p.endsWith('/');
    if (dirOnly) p = p.replace(/\/+$/, '');
    const anchored = p.includes('/');
    if (p.startsWith('/')) p = p.slice(1);
    if (p === '') continue;
    const body = globToRegExpSource(p);
    try {
      rules.push({ re: new RegExp(anchored ? `^${body}$` : `(?:^|/)${body}$`, 's'), dirOnly });
    } catch {
      // A malformed bracket expression matches nothing rather than breaking verification.
    }
  }
  const matches = (p: string, isDir: boolean): boolean => rules.some((r) => (isDir || !r.dirOnly) && r.re.test(p));
  return (relPath, isDir) => {
    if (matches(relPath, isDir)) return true;
    for (let slash = relPath.indexOf('/'); slash > 0; slash = relPath.indexOf('/', slash + 1)) {
      if (matches(relPath.slice(0, slash), true)) return true;
    }
    return false;
  };
}
