// The user-visible latency of a sandbox's shortest life — create, first command, kill —
// through Wrenn's E2B-compatible API with the official e2b SDK, against the same
// through Wrenn's own /v1 API with plain fetch. Run by BenchmarkE2BSDK
// (bench/e2b_test.go), inside a network namespace that reaches only the control plane,
// with resolve-test-domain.mjs preloaded. Its environment:
//
//   WRENN_BENCH_API_URL     the control plane, http://<ip>:<port>
//   WRENN_BENCH_DOMAIN      its WRENN_DOMAIN (wrenn.test)
//   WRENN_BENCH_E2B_KEY     the team's API key in E2B's form (e2b_<hex>)
//   WRENN_BENCH_KEY         the same key as Wrenn issued it (wrn_<hex>)
//   WRENN_BENCH_ITERATIONS  timed iterations of each path
//   WRENN_BENCH_WARMUP      untimed iterations of each path first
//   WRENN_BENCH_OUT         the file the results go to, as JSON
//
// Each iteration runs both paths, in alternating order so that drift (caches, the
// page cache, a noisy neighbour) hits both alike, and records each phase in ms:
//   e2b  Sandbox.create → sbx.commands.run('true') → sbx.kill()
//   v1   POST /v1/sandboxes → POST /v1/sandboxes/{id}/exec → DELETE /v1/sandboxes/{id}
// The SDK's commands.run('true') starts `/bin/bash -l -c true` in the guest, so /v1
// runs that same command: the comparison is of the two APIs, not of two commands.
// What the login shell costs next to /bin/true is measured on the side (guestCmd).
//
// Sandboxes still alive after a failure are deleted before exiting.
import { writeFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { Sandbox } from 'e2b'

function env(name) {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set: this file is run by BenchmarkE2BSDK (bench/e2b_test.go)`)
  return v
}
const API_URL = env('WRENN_BENCH_API_URL')
const DOMAIN = env('WRENN_BENCH_DOMAIN')
const E2B_KEY = env('WRENN_BENCH_E2B_KEY')
const KEY = env('WRENN_BENCH_KEY')
const ITERATIONS = Number(env('WRENN_BENCH_ITERATIONS'))
const WARMUP = Number(env('WRENN_BENCH_WARMUP'))
const OUT = env('WRENN_BENCH_OUT')

// Header routing: envd traffic goes to the control plane with E2b-Sandbox-Id/-Port,
// as E2B_SANDBOX_URL makes the SDK do; no name outside the test domain resolves.
const sdkOpts = { apiKey: E2B_KEY, apiUrl: API_URL, sandboxUrl: API_URL, domain: DOMAIN, requestTimeoutMs: 120_000 }
// What commands.run('true') has envd start (e2b 2.x: Commands.start).
const SDK_COMMAND = { cmd: '/bin/bash', args: ['-l', '-c', 'true'] }
const GUEST_CMD_RUNS = 10

const alive = new Set() // sandbox ids created and not yet killed

async function v1(method, path, body) {
  const res = await fetch(`${API_URL}${path}`, {
    method,
    headers: { 'X-API-Key': KEY, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(120_000),
  })
  const text = await res.text()
  if (res.status >= 300) throw new Error(`${method} ${path}: HTTP ${res.status}: ${text}`)
  return text ? JSON.parse(text) : null
}

/** Runs the phases in order, each a function, and returns their durations in ms and their total. */
async function timed(phases) {
  const out = {}
  let total = 0
  for (const [name, fn] of Object.entries(phases)) {
    const t0 = performance.now()
    await fn()
    out[name] = performance.now() - t0
    total += out[name]
  }
  out.total = total
  return out
}

function e2bLife() {
  let sbx
  return timed({
    create: async () => {
      sbx = await Sandbox.create(sdkOpts)
      alive.add(sbx.sandboxId)
    },
    run: async () => {
      const r = await sbx.commands.run('true')
      if (r.exitCode !== 0) throw new Error(`e2b: commands.run('true') exited ${r.exitCode}: ${r.stderr}`)
    },
    kill: async () => {
      if (!(await sbx.kill())) throw new Error(`e2b: kill ${sbx.sandboxId}: not found`)
      alive.delete(sbx.sandboxId)
    },
  })
}

function v1Life() {
  let id
  return timed({
    create: async () => {
      id = (await v1('POST', '/v1/sandboxes', {})).id
      alive.add(id)
    },
    run: async () => {
      const r = await v1('POST', `/v1/sandboxes/${id}/exec`, SDK_COMMAND)
      if (r.exit_code !== 0) throw new Error(`v1: exec exited ${r.exit_code}: ${r.stderr}`)
    },
    kill: async () => {
      await v1('DELETE', `/v1/sandboxes/${id}`)
      alive.delete(id)
    },
  })
}

/** /bin/true against the SDK's login shell, through /v1 exec in one sandbox, interleaved. */
async function guestCmd() {
  const id = (await v1('POST', '/v1/sandboxes', {})).id
  alive.add(id)
  const out = { binTrue: [], bashLogin: [] }
  for (let i = 0; i < GUEST_CMD_RUNS; i++) {
    for (const [name, body] of [['binTrue', { cmd: '/bin/true' }], ['bashLogin', SDK_COMMAND]]) {
      const t0 = performance.now()
      const r = await v1('POST', `/v1/sandboxes/${id}/exec`, body)
      out[name].push(performance.now() - t0)
      if (r.exit_code !== 0) throw new Error(`exec ${JSON.stringify(body)} exited ${r.exit_code}`)
    }
  }
  await v1('DELETE', `/v1/sandboxes/${id}`)
  alive.delete(id)
  return out
}

async function main() {
  for (let i = 0; i < WARMUP; i++) {
    await e2bLife()
    await v1Life()
  }
  const results = { iterations: ITERATIONS, warmup: WARMUP, e2b: [], v1: [] }
  for (let i = 0; i < ITERATIONS; i++) {
    const order = i % 2 === 0 ? ['e2b', 'v1'] : ['v1', 'e2b']
    for (const path of order) {
      results[path].push(await (path === 'e2b' ? e2bLife() : v1Life()))
    }
    const [e, v] = [results.e2b.at(-1), results.v1.at(-1)]
    console.error(`iteration ${i + 1}/${ITERATIONS}: e2b ${e.total.toFixed(0)} ms, v1 ${v.total.toFixed(0)} ms`)
  }
  results.guestCmd = await guestCmd()
  writeFileSync(OUT, JSON.stringify(results))
}

try {
  await main()
} catch (err) {
  console.error(err)
  process.exitCode = 1
} finally {
  for (const id of alive) {
    await v1('DELETE', `/v1/sandboxes/${id}`).catch((e) => console.error(`cleanup: ${e}`))
  }
}
