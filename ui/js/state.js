// The UI's shared state and a tiny change notifier.

export const state = {
  projects: [],
  currentId: null,
  selection: new Set(),
  search: '',
  favoritesOnly: false,
};

const listeners = new Map();

/** Subscribes to a named change. */
export function on(event, fn) {
  if (!listeners.has(event)) listeners.set(event, []);
  listeners.get(event).push(fn);
}

/** Announces a named change. */
export function emit(event, detail) {
  for (const fn of listeners.get(event) || []) fn(detail);
}

/** The selected project's summary, if any. */
export function currentProject() {
  return state.projects.find((p) => p.id === state.currentId) || null;
}
