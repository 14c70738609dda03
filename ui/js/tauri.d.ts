// The part of Tauri's global API (`withGlobalTauri`) that the UI uses.

interface TauriEvent<T> {
  event: string;
  id: number;
  payload: T;
}

type TauriUnlisten = () => void;

interface TauriGlobal {
  core: {
    invoke<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T>;
    convertFileSrc(path: string, protocol?: string): string;
  };
  event: {
    listen<T = unknown>(event: string, handler: (event: TauriEvent<T>) => void): Promise<TauriUnlisten>;
  };
}

interface Window {
  __TAURI__: TauriGlobal;
}
