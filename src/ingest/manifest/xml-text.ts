/**
 * Character-level XML 1.0 rules for the text Shuttle writes into and reads out of manifests.
 * File names on Linux may hold almost any byte, XML 1.0 cannot carry most C0 controls at all (not even as
 * character references), so those names are refused rather than silently altered.
 */

/** A code point XML 1.0's `Char` production allows. */
export function isXmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/**
 * Index of the first UTF-16 unit that cannot go into an XML 1.0 document (a forbidden control, U+FFFE/U+FFFF,
 * or a lone surrogate, which also has no UTF-8 form), or -1.
 */
export function firstUnrepresentable(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const cp = text.codePointAt(i)!;
    if (cp >= 0xd800 && cp <= 0xdfff) return i; // codePointAt yields a surrogate only when it is unpaired
    if (!isXmlChar(cp)) return i;
    if (cp > 0xffff) i++;
  }
  return -1;
}

/**
 * Escapes for both element text and double-quoted attribute values. Tab, LF and CR become character
 * references so that a parser's line-end and attribute normalisation cannot change them; DEL and the C1
 * controls (legal but invisible) likewise, so a manifest stays readable.
 */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"\t\n\r\u007f-\u009f]/g, (ch) => {
    switch (ch) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      default:
        return `&#x${ch.charCodeAt(0).toString(16).toUpperCase()};`;
    }
  });
}

const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/**
 * Resolves the five predefined entities and character references in raw XML text. Anything else after
 * '&' (an undeclared or DTD-defined entity) is an error: manifests carry no DTD, and refusing them also
 * shuts out entity-expansion tricks.
 */
export function decodeXmlText(raw: string): { text: string } | { error: string } {
  let out = '';
  let i = 0;
  for (;;) {
    const amp = raw.indexOf('&', i);
    if (amp < 0) {
      out += raw.slice(i);
      break;
    }
    out += raw.slice(i, amp);
    const semi = raw.indexOf(';', amp);
    if (semi < 0) return { error: `unterminated reference at "${raw.slice(amp, amp + 12)}"` };
    const name = raw.slice(amp + 1, semi);
    const named = NAMED[name];
    if (named !== undefined) {
      out += named;
    } else {
      const m = /^#(?:x([0-9A-Fa-f]{1,6})|([0-9]{1,7}))$/.exec(name);
      if (!m) return { error: `unknown entity "&${name};"` };
      const cp = m[1] !== undefined ? parseInt(m[1], 16) : parseInt(m[2]!, 10);
      if (!isXmlChar(cp)) return { error: `character reference "&${name};" is not an XML character` };
      out += String.fromCodePoint(cp);
    }
    i = semi + 1;
  }
  const bad = firstUnrepresentable(out);
  if (bad >= 0) return { error: `character U+${out.charCodeAt(bad).toString(16).padStart(4, '0')} is not allowed in XML` };
  return { text: out };
}
