// Copy buttons for feed URLs. Searching, sorting and paging the sources are done by the
// server (a GET form and links), so the dashboard works without this script.
// Served as a file: the Content-Security-Policy allows no inline script.
"use strict";

document.querySelectorAll("button.copy").forEach((button) => {
  button.addEventListener("click", async () => {
    const url = new URL(button.dataset.url, window.location.href).href;
    try {
      await navigator.clipboard.writeText(url);
      button.textContent = "copied";
    } catch (error) {
      window.prompt("Copy the feed URL:", url);
    }
  });
});
