// A small WebGL renderer shipped with the dashboard (no library, nothing fetched from a network): triangle
// meshes lit from the camera, trajectories drawn as thin tubes, an orbit camera (drag to rotate, wheel or +/-
// to zoom, arrow keys to turn). Coordinates are millimetres in the plan's frame (z is superior in RAS and LPS
// alike); the camera looks at the middle of the scene. After the first frame the canvas carries
// data-drawn="true" and data-painted = the number of pixels that are not background (read back from WebGL).

const VS_MESH = `
attribute vec3 position; attribute vec3 normal;
uniform mat4 mvp; uniform mat3 rotation;
varying vec3 eyeNormal;
void main() { eyeNormal = rotation * normal; gl_Position = mvp * vec4(position, 1.0); }`;
const FS_MESH = `
precision mediump float;
varying vec3 eyeNormal; uniform vec4 color;
void main() { float light = 0.3 + 0.7 * abs(normalize(eyeNormal).z); gl_FragColor = vec4(color.rgb * light, color.a); }`;
const BACKGROUND = [0.06, 0.07, 0.09, 1];
const ROLE_COLORS = { head: [0.75, 0.75, 0.72, 0.16], target: [0.2, 0.8, 0.35, 1] };
const CRITICAL_COLORS = [[0.9, 0.2, 0.2, 1], [0.3, 0.5, 0.95, 1], [0.85, 0.55, 0.15, 1], [0.7, 0.3, 0.85, 1]];
const SELECTED = [1.0, 0.85, 0.1, 1];
const OTHER = [0.95, 0.95, 0.95, 0.9];

// --- 4x4 matrices, column-major as WebGL wants them ------------------------------------------------------
function multiply(a, b) {
  const out = new Float32Array(16);
  for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) {
    let s = 0;
    for (let k = 0; k < 4; k++) s += a[k * 4 + r] * b[c * 4 + k];
    out[c * 4 + r] = s;
  }
  return out;
}
function perspective(fovy, aspect, near, far) {
  const f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
  return new Float32Array([f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0]);
}
const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const unit = (a) => { const n = Math.hypot(a[0], a[1], a[2]) || 1; return [a[0] / n, a[1] / n, a[2] / n]; };
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
function lookAt(eye, centre, up) {
  const z = unit(sub(eye, centre)), x = unit(cross(up, z)), y = cross(z, x);
  return new Float32Array([x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0,
    -dot(x, eye), -dot(y, eye), -dot(z, eye), 1]);
}

// --- geometry -----------------------------------------------------------------------------------------------
/** Per-vertex normals (area-weighted face normals summed) for a flat vertex/face list. */
export function vertexNormals(vertices, faces) {
  const normals = new Float32Array(vertices.length);
  for (let f = 0; f < faces.length; f += 3) {
    const [a, b, c] = [faces[f] * 3, faces[f + 1] * 3, faces[f + 2] * 3];
    const n = cross(sub(vertices.slice(b, b + 3), vertices.slice(a, a + 3)),
                    sub(vertices.slice(c, c + 3), vertices.slice(a, a + 3)));
    for (const v of [a, b, c]) for (let k = 0; k < 3; k++) normals[v + k] += n[k];
  }
  return normals;
}

/** A closed 8-sided tube of ``radius`` mm from p to q: {vertices, faces}. */
export function tube(p, q, radius, sides = 8) {
  const axis = unit(sub(q, p));
  const helper = Math.abs(axis[2]) < 0.9 ? [0, 0, 1] : [1, 0, 0];
  const u = unit(cross(axis, helper)), v = cross(axis, u);
  const vertices = [], faces = [];
  for (const end of [p, q]) {
    for (let s = 0; s < sides; s++) {
      const t = (2 * Math.PI * s) / sides, c = Math.cos(t) * radius, d = Math.sin(t) * radius;
      vertices.push(end[0] + c * u[0] + d * v[0], end[1] + c * u[1] + d * v[1], end[2] + c * u[2] + d * v[2]);
    }
  }
  for (let s = 0; s < sides; s++) {
    const n = (s + 1) % sides;
    faces.push(s, n, sides + s, n, sides + n, sides + s);
  }
  vertices.push(...p, ...q);
  for (let s = 0; s < sides; s++) {
    const n = (s + 1) % sides;
    faces.push(2 * sides, n, s, 2 * sides + 1, sides + s, sides + n);
  }
  return { vertices, faces };
}

// --- the viewer -----------------------------------------------------------------------------------------------
function program(gl, vs, fs) {
  const make = (type, source) => {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
    return shader;
  };
  const p = gl.createProgram();
  gl.attachShader(p, make(gl.VERTEX_SHADER, vs));
  gl.attachShader(p, make(gl.FRAGMENT_SHADER, fs));
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
  return p;
}

export function createViewer(canvas) {
  const gl = canvas.getContext("webgl", { antialias: true });
  if (!gl) {
    canvas.dataset.drawn = "unavailable";
    return null;
  }
  gl.getExtension("OES_element_index_uint");
  const prog = program(gl, VS_MESH, FS_MESH);
  const loc = { position: gl.getAttribLocation(prog, "position"), normal: gl.getAttribLocation(prog, "normal"),
    mvp: gl.getUniformLocation(prog, "mvp"), rotation: gl.getUniformLocation(prog, "rotation"),
    color: gl.getUniformLocation(prog, "color") };
  const state = { meshes: [], paths: [], selected: 1, yaw: -0.6, pitch: 0.35, distance: 200, centre: [0, 0, 0],
    frames: 0, pending: false };

  function upload(vertices, faces, color) {
    const v = new Float32Array(vertices), f = new Uint32Array(faces);
    const buffers = [gl.createBuffer(), gl.createBuffer(), gl.createBuffer()];
    gl.bindBuffer(gl.ARRAY_BUFFER, buffers[0]);
    gl.bufferData(gl.ARRAY_BUFFER, v, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, buffers[1]);
    gl.bufferData(gl.ARRAY_BUFFER, vertexNormals(v, f), gl.STATIC_DRAW);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, buffers[2]);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, f, gl.STATIC_DRAW);
    return { buffers, count: f.length, color };
  }
  function release(items) { for (const m of items) for (const b of m.buffers) gl.deleteBuffer(b); }

  function drawMesh(m, mvp, rotation) {
    gl.uniformMatrix4fv(loc.mvp, false, mvp);
    gl.uniformMatrix3fv(loc.rotation, false, rotation);
    gl.uniform4fv(loc.color, m.color);
    gl.bindBuffer(gl.ARRAY_BUFFER, m.buffers[0]);
    gl.vertexAttribPointer(loc.position, 3, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, m.buffers[1]);
    gl.vertexAttribPointer(loc.normal, 3, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, m.buffers[2]);
    gl.drawElements(gl.TRIANGLES, m.count, gl.UNSIGNED_INT, 0);
  }

  function draw() {
    state.pending = false;
    const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(...BACKGROUND);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    const c = state.centre, d = state.distance;
    const eye = [c[0] + d * Math.cos(state.pitch) * Math.cos(state.yaw), c[1] + d * Math.cos(state.pitch) * Math.sin(state.yaw),
      c[2] + d * Math.sin(state.pitch)];
    const view = lookAt(eye, c, [0, 0, 1]);
    const mvp = multiply(perspective(0.7, canvas.width / Math.max(canvas.height, 1), d / 50, d * 4), view);
    const rotation = new Float32Array([view[0], view[1], view[2], view[4], view[5], view[6], view[8], view[9], view[10]]);
    gl.useProgram(prog);
    gl.enableVertexAttribArray(loc.position);
    gl.enableVertexAttribArray(loc.normal);
    gl.enable(gl.DEPTH_TEST);
    gl.disable(gl.BLEND);
    gl.depthMask(true);
    const opaque = [...state.meshes.filter((m) => m.color[3] >= 1), ...state.paths];
    for (const m of opaque) drawMesh(m, mvp, rotation);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    gl.depthMask(false);
    for (const m of state.meshes.filter((x) => x.color[3] < 1)) drawMesh(m, mvp, rotation);
    gl.depthMask(true);
    state.frames += 1;
    canvas.dataset.frames = String(state.frames);
    if (state.frames === 1 || canvas.dataset.drawn !== "true") countPainted();
  }
  function countPainted() {
    const pixels = new Uint8Array(canvas.width * canvas.height * 4);
    gl.readPixels(0, 0, canvas.width, canvas.height, gl.RGBA, gl.UNSIGNED_BYTE, pixels);
    const bg = BACKGROUND.map((x) => Math.round(x * 255));
    let painted = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      if (Math.abs(pixels[i] - bg[0]) + Math.abs(pixels[i + 1] - bg[1]) + Math.abs(pixels[i + 2] - bg[2]) > 6) painted++;
    }
    canvas.dataset.painted = String(painted);
    if (painted > 0 && state.meshes.length) canvas.dataset.drawn = "true";
  }
  const redraw = () => { if (!state.pending) { state.pending = true; requestAnimationFrame(draw); } };

  function setPaths(trajectories) {
    release(state.paths);
    state.paths = trajectories.map((t) => {
      const chosen = t.rank === state.selected;
      const m = tube(t.entry_mm, t.target_mm, chosen ? 1.2 : 0.5);
      return upload(m.vertices, m.faces, chosen ? SELECTED : OTHER);
    });
  }

  let dragging = null;
  const listeners = {
    pointerdown: (e) => { dragging = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId); },
    pointermove: (e) => {
      if (!dragging) return;
      state.yaw -= (e.clientX - dragging[0]) * 0.01;
      state.pitch = Math.max(-1.5, Math.min(1.5, state.pitch + (e.clientY - dragging[1]) * 0.01));
      dragging = [e.clientX, e.clientY];
      redraw();
    },
    pointerup: () => { dragging = null; },
    wheel: (e) => { e.preventDefault(); state.distance *= Math.exp(e.deltaY * 0.001); redraw(); },
    keydown: (e) => {
      const turn = { ArrowLeft: [0.1, 0], ArrowRight: [-0.1, 0], ArrowUp: [0, 0.1], ArrowDown: [0, -0.1] }[e.key];
      if (turn) { state.yaw += turn[0]; state.pitch = Math.max(-1.5, Math.min(1.5, state.pitch + turn[1])); }
      else if (e.key === "+" || e.key === "=") state.distance *= 0.9;
      else if (e.key === "-") state.distance /= 0.9;
      else return;
      e.preventDefault();
      redraw();
    },
  };
  for (const [name, handler] of Object.entries(listeners)) canvas.addEventListener(name, handler, { passive: name !== "wheel" });
  let trajectories = [];

  return {
    setScene(scene) {
      release(state.meshes);
      let critical = 0;
      state.meshes = scene.structures.map((s) => upload(s.vertices_mm, s.faces, ROLE_COLORS[s.role]
        || CRITICAL_COLORS[critical++ % CRITICAL_COLORS.length]));
      const all = scene.structures.flatMap((s) => s.vertices_mm);
      const lo = [0, 1, 2].map((k) => Math.min(...all.filter((_, i) => i % 3 === k)));
      const hi = [0, 1, 2].map((k) => Math.max(...all.filter((_, i) => i % 3 === k)));
      state.centre = lo.map((v, k) => (v + hi[k]) / 2);
      state.distance = 1.6 * Math.max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2], 1);
      trajectories = scene.trajectories;
      setPaths(trajectories);
      redraw();
    },
    select(rank) { state.selected = rank; setPaths(trajectories); redraw(); },
    destroy() {
      for (const [name, handler] of Object.entries(listeners)) canvas.removeEventListener(name, handler);
      release(state.meshes);
      release(state.paths);
    },
  };
}
