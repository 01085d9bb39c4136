// Sorting and searching the sources table, and copy buttons for feed URLs.
// Served as a file: the Content-Security-Policy allows no inline script.
"use strict";

function sortTable(table, column, numeric, descending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const key = (row) => {
    const cell = row.cells[column];
    const value = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
    return numeric ? Number(value) || 0 : value.toLowerCase();
  };
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    const order = x < y ? -1 : x > y ? 1 : 0;
    return descending ? -order : order;
  });
  rows.forEach((row) => body.appendChild(row));
}

document.querySelectorAll("table[data-sortable]").forEach((table) => {
  table.querySelectorAll("th[data-sort]").forEach((header, column) => {
    let descending = false;
    header.addEventListener("click", () => {
      sortTable(table, Array.from(header.parentNode.children).indexOf(header),
                header.dataset.sort === "number", descending);
      descending = !descending;
    });
  });
});

const search = document.getElementById("source-search");
if (search) {
  search.addEventListener("input", () => {
    const needle = search.value.trim().toLowerCase();
    document.querySelectorAll("#sources tbody tr").forEach((row) => {
      row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
    });
  });
}

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
