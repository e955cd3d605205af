/**
 * The part of gitignore-style ("gitwildmatch") patterns that ASC MHL ignore lists use in practice:
 * `*`, `?`, `**`, `[...]`, a leading or inner '/' anchoring to the root, a trailing '/' for folders only,
 * `\` escapes. Negation (`!`) cannot be honoured by a plain matcher and such patterns are skipped.
 */
export type IgnoreMatcher = (relPath: string, isDir: boolean) => boolean;

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
  return (relPath, isDir) => rules.some((r) => (isDir || !r.dirOnly) && r.re.test(relPath));
}
