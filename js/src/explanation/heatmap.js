// The image with a heatmap over it on one canvas: the image's pixels as they are, the heatmap
// (any resolution, scaled to its own maximum) upsampled smoothly and drawn at the opacity asked.

/** A heat value in [0, 1] as RGBA: transparent at 0, dark red through orange to pale yellow
 * (the colours of the gallery's overlays, views/data.py's heat_colours). */
export function heatColour(v) {
  const clip = (x) => Math.max(0, Math.min(255, x));
  return [clip(120 + 400 * v), clip(255 * (v - 0.35) * 1.6), clip(255 * (v - 0.8) * 5), clip(215 * v ** 1.5)];
}

function canvasOf(width, height, fill) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const pixels = ctx.createImageData(width, height);
  fill(pixels.data);
  ctx.putImageData(pixels, 0, 0);
  return canvas;
}

/** Image `row` of a uint8 (n, H, W, 3) array as a canvas of its size. */
export function imageCanvas(images, row) {
  const [, height, width] = images.shape;
  const start = row * height * width * 3;
  return canvasOf(width, height, (out) => {
    for (let p = 0; p < width * height; p++) {
      out[4 * p] = images[start + 3 * p];
      out[4 * p + 1] = images[start + 3 * p + 1];
      out[4 * p + 2] = images[start + 3 * p + 2];
      out[4 * p + 3] = 255;
    }
  });
}

/** The (h, w) map at `offset` of a float32 array as heat colours, scaled to its maximum
 * (nothing is drawn where the map is zero or negative). */
export function heatCanvas(values, offset, height, width) {
  let top = 0;
  for (let p = 0; p < width * height; p++) top = Math.max(top, values[offset + p]);
  return canvasOf(width, height, (out) => {
    for (let p = 0; p < width * height; p++) {
      const v = top > 0 ? Math.max(0, values[offset + p]) / top : 0;
      out.set(heatColour(v), 4 * p);
    }
  });
}

/** Draw `image` (a canvas) and `heat` (a canvas or null) at `opacity` into `canvas`, `px`
 * pixels wide and high on the page. */
export function drawOver(canvas, image, heat, opacity, px) {
  const scale = window.devicePixelRatio || 1;
  canvas.width = Math.round(px * scale);
  canvas.height = Math.round(px * scale);
  canvas.style.width = canvas.style.height = `${px}px`;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;  // the image's own pixels
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  if (!heat || opacity <= 0) return;
  ctx.imageSmoothingEnabled = true;
  ctx.globalAlpha = opacity;
  ctx.drawImage(heat, 0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 1;
}
