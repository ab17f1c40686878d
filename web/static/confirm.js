// Ask before destructive buttons (data-confirm) outside the live view.
document.addEventListener("submit", (event) => {
  const button = event.target.querySelector("button[data-confirm]");
  if (button && !event.target.closest("#live") && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});
