/**
 * How often people hear from the station. A burst (ten cards done within a minute, a failing hot folder)
 * becomes one message per window instead of ten; a condition that persists ("disk low") is repeated at
 * most every so often.
 */

/**
 * The first item goes out at once and opens a window; what comes while it is open is held and goes out
 * together when it closes, opening the next window. A window of 0 sends every item on its own.
 */
export class Coalescer<T> {
  #pending: T[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly windowMs: number,
    private readonly send: (items: T[]) => void,
  ) {}

  push(item: T): void {
    if (this.#timer !== undefined) {
      this.#pending.push(item);
      return;
    }
    this.send([item]);
    this.#open();
  }

  /** Sends what is held now (the daemon is stopping). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const items = this.#pending.splice(0);
    if (items.length > 0) this.send(items);
  }

  #open(): void {
    if (this.windowMs <= 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const items = this.#pending.splice(0);
      if (items.length === 0) return;
      this.send(items);
      this.#open();
    }, this.windowMs);
    this.#timer.unref();
  }
}

/** Lets a kind of message through at most once per `everyMs`. */
export class RepeatLimit {
  readonly #last = new Map<string, number>();

  constructor(
    private readonly everyMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** True (and counted as sent) when `kind` may be sent now. */
  take(kind: string): boolean {
    const t = this.now();
    const last = this.#last.get(kind);
    if (last !== undefined && t - last < this.everyMs) return false;
    this.#last.set(kind, t);
    return true;
  }
}
