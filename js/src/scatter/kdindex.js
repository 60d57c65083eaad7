// The spatial index (a static kd-tree) that regl-scatterplot uses for hover and lasso, built off
// the main thread. regl-scatterplot would build it on the main thread from per-point arrays before
// it draws anything; for a million points that is a quarter of a second or more before the first
// frame. Here a worker builds the same serialised index (KDBush v4 layout: 8-byte header, point
// ids, then the coordinates in tree order) from the two coordinate arrays, and
// `scatter.draw(points, { spatialIndex })` only wraps the buffer (KDBush.from keeps views into it,
// it does not copy). So the scatter can draw with an empty index of the right size and fill it in
// place when the worker is done (`fillKdIndex`): hover and lasso start working then.

/**
 * A serialised kd-tree over the points (xs[i], ys[i]) as an ArrayBuffer in the KDBush v4 format
 * (float32 coordinates), so regl-scatterplot's `KDBush.from` reads it. Each node of more than
 * `nodeSize` points stores its median (by x at even depths, by y at odd depths) in the middle
 * slot, smaller-or-equal points to the left, greater-or-equal to the right. With `empty`, the
 * same layout for xs.length points whose coordinates are all NaN: no query finds anything.
 *
 * Self-contained on purpose (no outside names): its source is also the body of the worker.
 */
export function buildKdIndex(xs, ys, nodeSize = 64, empty = false) {
  const n = xs.length;
  const Ids = n < 65536 ? Uint16Array : Uint32Array;
  const idBytes = n * Ids.BYTES_PER_ELEMENT;
  const pad = (8 - (idBytes % 8)) % 8;
  const data = new ArrayBuffer(8 + idBytes + pad + n * 2 * 4);
  const head = new Uint8Array(data, 0, 2);
  head[0] = 0xdb;                 // KDBush magic
  head[1] = (1 << 4) + 7;         // format version 1, coordinates as Float32Array (type 7)
  new Uint16Array(data, 2, 1)[0] = nodeSize;
  new Uint32Array(data, 4, 1)[0] = n;
  const ids = new Ids(data, 8, n);
  const coords = new Float32Array(data, 8 + idBytes + pad, 2 * n);
  if (empty) { coords.fill(NaN); return data; }

  // sort working copies (contiguous per axis), then interleave into the buffer at the end
  const kx = new Float32Array(xs), ky = new Float32Array(ys);
  for (let i = 0; i < n; i++) ids[i] = i;
  const swap = (i, j) => {
    let t = ids[i]; ids[i] = ids[j]; ids[j] = t;
    t = kx[i]; kx[i] = kx[j]; kx[j] = t;
    t = ky[i]; ky[i] = ky[j]; ky[j] = t;
  };
  // put the k-th smallest (by key array a) of [left, right] at k, smaller-or-equal before it and
  // greater-or-equal after it (quickselect, median-of-three pivot, Hoare partition)
  const selectK = (a, k, left, right) => {
    while (right > left) {
      if (right - left < 16) {  // short runs: insertion sort
        for (let i = left + 1; i <= right; i++) {
          for (let j = i; j > left && a[j - 1] > a[j]; j--) swap(j, j - 1);
        }
        return;
      }
      const mid = (left + right) >> 1;
      if (a[mid] < a[left]) swap(mid, left);
      if (a[right] < a[left]) swap(right, left);
      if (a[right] < a[mid]) swap(right, mid);
      const pivot = a[mid];
      let i = left, j = right;
      while (i <= j) {
        while (a[i] < pivot) i++;
        while (a[j] > pivot) j--;
        if (i <= j) { swap(i, j); i++; j--; }
      }
      // now [left, j] <= pivot <= [i, right] and everything between equals the pivot
      if (k <= j) right = j;
      else if (k >= i) left = i;
      else return;
    }
  };
  const stack = [0, n - 1, 0];
  while (stack.length) {
    const axis = stack.pop(), right = stack.pop(), left = stack.pop();
    if (right - left <= nodeSize) continue;
    const m = (left + right) >> 1;
    selectK(axis === 0 ? kx : ky, m, left, right);
    stack.push(left, m - 1, 1 - axis, m + 1, right, 1 - axis);
  }
  for (let i = 0; i < n; i++) { coords[2 * i] = kx[i]; coords[2 * i + 1] = ky[i]; }
  return data;
}

/** An index of n points in which nothing is found yet: `fillKdIndex` completes it in place. */
export function emptyKdIndex(n, nodeSize = 64) {
  return buildKdIndex({ length: n }, null, nodeSize, true);
}

/** Copy a built index into an empty one of the same size (which regl-scatterplot already uses). */
export function fillKdIndex(target, built) {
  if (!(built instanceof ArrayBuffer) || built.byteLength !== target.byteLength) {
    throw new Error("the spatial index does not match the points it is for");
  }
  new Uint8Array(target).set(new Uint8Array(built));
  return target;
}

let workerUrl = null;
function spawn() {
  if (!workerUrl) {
    const source = `const build = (${buildKdIndex.toString()});\n`
      + "self.onmessage = (e) => {\n"
      + "  try { const out = build(e.data.xs, e.data.ys, e.data.nodeSize); self.postMessage(out, [out]); }\n"
      + "  catch (err) { self.postMessage({ error: String(err && err.message || err) }); }\n"
      + "};\n";
    workerUrl = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  }
  return new Worker(workerUrl, { name: "notebookcarto-kdindex" });
}

/**
 * Build the index of (xs, ys) in a worker: a promise of the ArrayBuffer, or of null where
 * workers are unavailable or fail (then regl-scatterplot builds its own). The arrays are
 * copied, so the caller may keep using them. `signal` stops the worker.
 */
export function kdIndexInWorker(xs, ys, { nodeSize = 64, timeout = 20000, signal } = {}) {
  return new Promise((resolve) => {
    let worker;
    try {
      if (typeof Worker === "undefined" || signal?.aborted) { resolve(null); return; }
      worker = spawn();
    } catch (err) {
      resolve(null);
      return;
    }
    let timer = 0;
    const done = (value) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
      worker.terminate();
      resolve(value);
    };
    const stop = () => done(null);
    timer = setTimeout(stop, timeout);
    signal?.addEventListener("abort", stop);
    worker.onmessage = (e) => done(e.data instanceof ArrayBuffer ? e.data : null);
    worker.onerror = (e) => { e.preventDefault?.(); done(null); };
    worker.onmessageerror = stop;
    const x = new Float32Array(xs), y = new Float32Array(ys);
    worker.postMessage({ xs: x, ys: y, nodeSize }, [x.buffer, y.buffer]);
  });
}
