// @ts-check
// Runs before the first paint (a classic script in <head>, not a module): the remembered theme and
// sidebar width go on <html> at once, so the page never shows the wrong colours or jumps.
// app.js changes both later; the keys and bounds here are the ones it uses.
(() => {
  const root = document.documentElement;
  try {
    const theme = localStorage.getItem("getgpt.theme.v1");
    if (theme === "light" || theme === "dark") root.dataset.theme = theme;
    const width = Number(localStorage.getItem("getgpt.sidebarWidth.v1"));
    if (width >= 220 && width <= 480) root.style.setProperty("--sidebar-width", `${width}px`);
  } catch {
    // storage refused (private mode): the system's theme and the default width
  }
})();
