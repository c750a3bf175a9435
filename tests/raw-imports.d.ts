// Vite imports a file as text with the `?raw` suffix (used by tests that check configuration files).
declare module "*?raw" {
  const text: string;
  export default text;
}
