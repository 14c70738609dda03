// A minimal W3C WebDriver client over fetch (Node 18+), enough to drive the app through
// tauri-driver: sessions, elements, clicks, typing, key presses, scripts and screenshots.

const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

/** WebDriver's codes for special keys. */
export const Keys = Object.freeze({
  ENTER: '\uE007',
  ESCAPE: '\uE00C',
  CONTROL: '\uE009',
  META: '\uE03D',
  ARROW_LEFT: '\uE012',
  ARROW_RIGHT: '\uE014',
});

export class WebDriver {
  constructor(base) {
    this.base = base;
    this.session = null;
  }

  async call(method, path, body) {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json().catch(() => ({}));
    if (!res.ok) {
      const v = json.value || {};
      throw new Error(`${method} ${path}: ${res.status} ${v.error || ''} ${v.message || ''}`);
    }
    return json.value;
  }

  async start(capabilities) {
    const value = await this.call('POST', '/session', { capabilities: { alwaysMatch: capabilities } });
    this.session = value.sessionId;
  }

  s(path) {
    return `/session/${this.session}${path}`;
  }

  async quit() {
    if (this.session) await this.call('DELETE', this.s('')).catch(() => {});
    this.session = null;
  }

  async find(css) {
    const value = await this.call('POST', this.s('/element'), { using: 'css selector', value: css });
    return value[ELEMENT];
  }

  async click(css) {
    const id = await this.waitFor(css);
    await this.call('POST', this.s(`/element/${id}/click`), {});
  }

  async type(css, text) {
    const id = await this.waitFor(css);
    await this.call('POST', this.s(`/element/${id}/clear`), {});
    if (text) await this.call('POST', this.s(`/element/${id}/value`), { text });
  }

  async text(css) {
    const id = await this.waitFor(css);
    return this.call('GET', this.s(`/element/${id}/text`));
  }

  /**
   * Presses keys together through the W3C actions API (real key events, as a person types):
   * all down in order, then up in reverse. Use `Keys` for special keys.
   */
  async keys(...keys) {
    const down = keys.map((value) => ({ type: 'keyDown', value }));
    const up = [...keys].reverse().map((value) => ({ type: 'keyUp', value }));
    await this.call('POST', this.s('/actions'), { actions: [{ type: 'key', id: 'keyboard', actions: [...down, ...up] }] });
    await this.call('DELETE', this.s('/actions')).catch(() => {});
  }

  async exec(script, ...args) {
    return this.call('POST', this.s('/execute/sync'), { script, args });
  }

  /** Waits until `css` matches a visible element and returns its id. */
  async waitFor(css, timeoutMs = 20000) {
    return this.until(async () => {
      const visible = await this.exec(
        'const e = document.querySelector(arguments[0]); return !!e && !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);',
        css,
      );
      return visible ? this.find(css) : null;
    }, `element ${css}`, timeoutMs);
  }

  /** Polls `check` until it returns a truthy value. */
  async until(check, what, timeoutMs = 20000) {
    const end = Date.now() + timeoutMs;
    let last;
    while (Date.now() < end) {
      try {
        const v = await check();
        if (v) return v;
      } catch (e) {
        last = e;
      }
      await new Promise((r) => setTimeout(r, 150));
    }
    throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
  }

  async screenshot() {
    return Buffer.from(await this.call('GET', this.s('/screenshot')), 'base64');
  }
}
