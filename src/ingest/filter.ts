import { posix } from 'node:path';

/**
 * include/exclude from the config: glob patterns (`*`, `?`, `[...]`) matched against a file's name,
 * case-insensitively (cards are FAT: IMG_0001.JPG and img_0001.jpg are one name). The config has
 * already lower-cased them and turned bare extensions into `*.ext`.
 */
export interface NameFilter {
  include?: readonly string[] | undefined;
  exclude?: readonly string[] | undefined;
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end === -1) {
        re += '\\[';
      } else {
        const body = glob.slice(i + 1, end).replace(/\\/g, '\\\\');
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 'is');
}

/** A predicate on '/'-separated source paths: true when the file is to be ingested. */
export function nameFilter(filter: NameFilter): (path: string) => boolean {
  const include = filter.include?.map(globToRegExp);
  const exclude = (filter.exclude ?? []).map(globToRegExp);
  if (include === undefined && exclude.length === 0) return () => true;
  return (path) => {
    const name = posix.basename(path);
    if (include !== undefined && !include.some((r) => r.test(name))) return false;
    return !exclude.some((r) => r.test(name));
  };
}
