// The official e2b JS SDK against Wrenn's E2B-compatible REST API and sandbox routing
// (shared/specs/e2b-rest-api.md), unchanged, the way a user's program drives E2B.
//
// Run by TestE2BSDK (test/e2e/e2b_sdk_test.go), which starts two control planes on one
// database (a plain-HTTP one and an HTTPS/HTTP2 one on port 443 of the same address),
// a host agent, two teams with an API key each, and runs this file in a network
// namespace that reaches nothing but that address, with resolve-test-domain.mjs
// preloaded (wrenn.test and *.wrenn.test → that address) and the test CA in
// NODE_EXTRA_CA_CERTS. Its environment:
//
//   WRENN_E2B_API_URL    the plain control plane, http://<ip>:<port>
//   WRENN_E2B_DOMAIN     the domain both serve sandboxes under (wrenn.test)
//   WRENN_E2B_KEY        our team's key in E2B's form (e2b_<hex>)
//   WRENN_E2B_KEY_WRN    the same key as Wrenn issued it (wrn_<hex>)
//   WRENN_E2B_OTHER_KEY  another team's key (e2b_<hex>)
//
// Two ways of reaching sandboxes, each as the SDK does it by itself:
//   header routing   apiUrl and sandboxUrl (E2B_SANDBOX_URL) = the plain server; envd
//                    traffic carries E2b-Sandbox-Id/-Port headers. The full lifecycle.
//   default routing  only `domain`: the API at https://api.<domain>, envd at
//                    https://49983-<id>.<domain>. Create, commands, files, a port, the
//                    signed file URLs (which only per-sandbox hosts can route), kill.
// Connection options are passed per call; TestE2BSDK strips every E2B_* variable.
//
// Three sandboxes in all (each a real VM, slow under TCG); after() kills every one
// created, whatever failed.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import dns from 'node:dns'
import net from 'node:net'
import {
  AuthenticationError,
  CommandExitError,
  FileType,
  FilesystemEventType,
  Sandbox,
  SandboxNotFoundError,
} from 'e2b'

function env(name) {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set: this file is run by TestE2BSDK (test/e2e/e2b_sdk_test.go)`)
  return v
}
const API_URL = env('WRENN_E2B_API_URL')
const DOMAIN = env('WRENN_E2B_DOMAIN')
const KEY = env('WRENN_E2B_KEY')
const KEY_WRN = env('WRENN_E2B_KEY_WRN')
const OTHER_KEY = env('WRENN_E2B_OTHER_KEY')

const headerRouting = { apiKey: KEY, apiUrl: API_URL, sandboxUrl: API_URL, domain: DOMAIN, requestTimeoutMs: 60_000 }
const defaultRouting = { apiKey: KEY, domain: DOMAIN, requestTimeoutMs: 60_000 }

// Metadata unique to this run: list filters see only this run's sandboxes.
const RUN = randomBytes(6).toString('hex')
const T = { timeout: 60_000 }
const created = new Set()

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Polls cond until it returns a truthy value; what (a string or a function giving one) names it. */
async function waitFor(what, cond, timeoutMs = 10_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await cond()
    if (v) return v
    if (Date.now() > deadline) {
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`)
    }
    await sleep(everyMs)
  }
}

/** Resolves to the error promise rejects with, asserting it is an instance of cls. */
async function rejectsWith(promise, cls, what) {
  let err
  await assert.rejects(promise, (e) => {
    err = e
    return true
  })
  assert.ok(err instanceof cls, `${what}: want ${cls.name}, got ${err?.constructor?.name}: ${err?.message}`)
  return err
}

/**
 * test() for a step that needs ready() to be truthy (its sandboxes): with a clear
 * failure, not a TypeError, when creating them failed.
 */
function stepNeeding(ready, what) {
  return (name, opts, fn) =>
    test(name, opts, async (t) => {
      assert.ok(ready(), `${what} failed above`)
      await fn(t)
    })
}

async function create(opts) {
  const sbx = await Sandbox.create(opts)
  created.add(sbx.sandboxId)
  return sbx
}

/** GET url with plain fetch (no SDK): status, content type and body. */
async function get(url, init = {}) {
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000), ...init })
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() }
}

/** Every page of a Sandbox.list paginator, checking the paging contract on the way. */
async function listPages(opts) {
  const p = Sandbox.list(opts)
  const pages = []
  while (p.hasNext) {
    assert.ok(pages.length < 20, 'more than 20 pages: the paginator does not end')
    pages.push(await p.nextItems())
  }
  assert.equal(p.nextToken, undefined, 'the last page carries a next token')
  return pages
}

async function listIds(opts) {
  return (await listPages(opts)).flat().map((s) => s.sandboxId)
}

/**
 * Serves dir of the sandbox with `python3 -m http.server 8000` (a background command)
 * and waits until https://getHost(8000)/index.txt answers 200 with content.
 */
async function serveHTTP(sbx, dir, content) {
  await sbx.files.write(`${dir}/index.txt`, content)
  const h = await sbx.commands.run('python3 -m http.server 8000 --bind 0.0.0.0', {
    background: true,
    cwd: dir,
    timeoutMs: 0,
  })
  const url = `https://${sbx.getHost(8000)}/index.txt`
  let last
  await waitFor(
    () => `${url} to answer 200 (last: ${JSON.stringify(last)})`,
    async () => {
      last = await get(url).catch((e) => ({ error: String(e.cause ?? e) }))
      return last.status === 200
    },
    30_000,
    250,
  )
  assert.equal(last.body, content)
  await h.disconnect()
}

/** The proxy's answer for a port of a sandbox that does not exist (any more). */
async function assertGone502(id) {
  const res = await get(`https://3000-${id}.${DOMAIN}/`)
  assert.equal(res.status, 502, `https://3000-${id}.${DOMAIN}/: ${res.status} ${res.body}`)
  assert.match(res.type, /^application\/json/)
  const body = JSON.parse(res.body)
  assert.equal(body.code, 502)
  assert.equal(body.message, 'The sandbox was not found')
  assert.ok(id.startsWith(body.sandboxId) && body.sandboxId.length > 0, `sandboxId ${body.sandboxId} for ${id}`)
}

before(async () => {
  // The preload is active and the namespace has no way out: both, or this test could
  // reach e2b.app or the internet.
  const { address } = await dns.promises.lookup(`api.${DOMAIN}`)
  assert.equal(address, process.env.WRENN_TEST_DOMAIN_IP, 'resolve-test-domain.mjs is not preloaded')
  await assert.rejects(dns.promises.lookup('e2b.app'), { code: 'ENOTFOUND' })
  await assert.rejects(
    new Promise((resolve, reject) => {
      const s = net.connect({ host: '192.0.2.1', port: 443, timeout: 3_000 }, () => resolve(s.destroy()))
      s.on('error', reject).on('timeout', () => reject(new Error('no answer (a route out exists?)')))
    }),
    { code: 'ENETUNREACH' },
    'the test namespace has a route off the gateway subnet',
  )
})

after(async () => {
  for (const id of created) {
    await Sandbox.kill(id, headerRouting).catch((e) => console.error(`kill ${id}: ${e}`))
  }
})

describe('header routing (E2B_SANDBOX_URL): the whole lifecycle', () => {
  let first // commands, files, info, other team, expiry by setTimeout
  let second // extend, pause, connect, kill
  const meta = { run: RUN, role: 'first', note: 'a b&c=d/é' } // the SDK encodes it twice
  const dir = `/tmp/e2b-e2e-${RUN}`
  const step = stepNeeding(() => first && second, 'Sandbox.create')

  test('Sandbox.create with metadata, envs, no internet, a timeout', { timeout: 120_000 }, async () => {
    first = await create({
      ...headerRouting,
      metadata: meta,
      envs: { WRENN_E2E_GREETING: 'hello from create' },
      allowInternetAccess: false,
      timeoutMs: 600_000, // outlives every step before it is shortened, even under TCG
    })
    assert.match(first.sandboxId, /^[a-z0-9]+$/)
    second = await create({ ...headerRouting, metadata: { run: RUN, role: 'second' }, timeoutMs: 300_000 })
    assert.notEqual(second.sandboxId, first.sandboxId)
    assert.equal(first.envdApiUrl, API_URL, 'envd traffic should go to sandboxUrl')
    assert.equal(await first.isRunning(), true)
  })

  step('commands.run: output, exit codes, envs from create', T, async () => {
    const r = await first.commands.run('echo out; echo err >&2')
    assert.equal(r.stdout, 'out\n')
    assert.equal(r.stderr, 'err\n')
    assert.equal(r.exitCode, 0)
    const e = await rejectsWith(first.commands.run('exit 7'), CommandExitError, 'exit 7')
    assert.equal(e.exitCode, 7)
    assert.equal((await first.commands.run('echo "$WRENN_E2E_GREETING"')).stdout, 'hello from create\n')
  })

  step('commands: a background command and kill(); stdin', T, async () => {
    const h = await first.commands.run('sleep 1000', { background: true })
    assert.ok(Number.isInteger(h.pid) && h.pid > 0, `pid ${h.pid}`)
    assert.ok((await first.commands.list()).some((p) => p.pid === h.pid), 'background command not listed')
    assert.equal(await h.kill(), true)
    await rejectsWith(h.wait(), CommandExitError, 'wait() on a killed command')
    await waitFor('the killed command to leave commands.list()', async () =>
      !(await first.commands.list()).some((p) => p.pid === h.pid),
    )

    const cat = await first.commands.run('head -n 1', { background: true, stdin: true })
    await first.commands.sendStdin(cat.pid, 'a line through stdin\n')
    const r = await cat.wait()
    assert.equal(r.stdout, 'a line through stdin\n')
    assert.equal(r.exitCode, 0)
  })

  step('files: write, read, list, watchDir', T, async () => {
    await first.files.makeDir(dir)
    const events = []
    const w = await first.files.watchDir(dir, (ev) => events.push(ev))
    try {
      await first.files.write(`${dir}/hello.txt`, 'hello, wrenn\n')
      assert.equal(await first.files.read(`${dir}/hello.txt`), 'hello, wrenn\n')
      const entries = await first.files.list(dir)
      const hello = entries.find((e) => e.name === 'hello.txt')
      assert.ok(hello, `hello.txt not in ${JSON.stringify(entries.map((e) => e.name))}`)
      assert.equal(hello.type, FileType.FILE)
      assert.equal(hello.path, `${dir}/hello.txt`)
      await waitFor('a watchDir event for hello.txt', () => events.some((e) => e.name === 'hello.txt'))
      const types = events.filter((e) => e.name === 'hello.txt').map((e) => e.type)
      assert.ok(
        types.includes(FilesystemEventType.CREATE) || types.includes(FilesystemEventType.WRITE),
        `events for hello.txt: ${types}`,
      )
    } finally {
      await w.stop()
    }
  })

  step('getInfo: id, template, metadata, state, endAt; the wrn_ key is the same key', T, async () => {
    const info = await first.getInfo()
    assert.equal(info.sandboxId, first.sandboxId)
    assert.ok(typeof info.templateId === 'string' && info.templateId.length > 0, `templateId ${info.templateId}`)
    assert.deepEqual(info.metadata, meta)
    assert.equal(info.state, 'running')
    assert.ok(info.startedAt instanceof Date && info.startedAt <= Date.now() + 2_000, `startedAt ${info.startedAt}`)
    assert.ok(info.endAt instanceof Date && !Number.isNaN(info.endAt.getTime()), `endAt ${info.endAt}`)
    const left = info.endAt - Date.now()
    assert.ok(left > 300_000 && left <= 602_000, `endAt ${info.endAt.toISOString()} is not ~600 s from create`)
    if (info.allowInternetAccess !== undefined) assert.equal(info.allowInternetAccess, false)

    const byWrn = await Sandbox.getInfo(first.sandboxId, { ...headerRouting, apiKey: KEY_WRN })
    assert.equal(byWrn.sandboxId, first.sandboxId)
  })

  step('getHost(port): a server in the sandbox over https://{port}-{id}.{domain}', T, async () => {
    assert.equal(first.getHost(8000), `8000-${first.sandboxId}.${DOMAIN}`)
    await serveHTTP(first, dir, `served from ${first.sandboxId}\n`)
  })

  step("another team's key finds nothing; a made-up key is refused", T, async () => {
    const id = first.sandboxId
    const other = { ...headerRouting, apiKey: OTHER_KEY }
    const was = await first.getInfo()
    await rejectsWith(Sandbox.getInfo(id, other), SandboxNotFoundError, 'getInfo')
    assert.equal(await Sandbox.kill(id, other), false, 'kill by another team')
    await rejectsWith(Sandbox.connect(id, other), SandboxNotFoundError, 'connect')
    await rejectsWith(Sandbox.setTimeout(id, 1_000, other), SandboxNotFoundError, 'setTimeout')
    await rejectsWith(Sandbox.pause(id, other), SandboxNotFoundError, 'pause')
    const listed = await listIds(other)
    assert.ok(!listed.includes(id) && !listed.includes(second.sandboxId), `listed for another team: ${listed}`)

    const bogus = { ...headerRouting, apiKey: `e2b_${randomBytes(16).toString('hex')}` }
    await rejectsWith(Sandbox.getInfo(id, bogus), AuthenticationError, 'getInfo with a made-up key')
    await rejectsWith(Sandbox.list(bogus).nextItems(), AuthenticationError, 'list with a made-up key')
    await rejectsWith(Sandbox.create({ ...bogus, timeoutMs: 30_000 }), AuthenticationError, 'create with a made-up key')

    // None of it touched the sandbox.
    const now = await first.getInfo()
    assert.equal(now.state, 'running')
    assert.equal(now.endAt.getTime(), was.endAt.getTime(), "another team's setTimeout moved endAt")
  })

  step('setTimeout extends endAt; connect to a running sandbox never shortens it', T, async () => {
    const was = (await second.getInfo()).endAt
    await second.setTimeout(600_000)
    const extended = (await second.getInfo()).endAt
    assert.ok(extended - was > 200_000, `endAt ${was.toISOString()} → ${extended.toISOString()}`)
    assert.ok(Math.abs(extended - (Date.now() + 600_000)) < 5_000, `endAt ${extended.toISOString()}`)

    const again = await Sandbox.connect(second.sandboxId, { ...headerRouting, timeoutMs: 30_000 })
    assert.equal(again.sandboxId, second.sandboxId)
    assert.equal((await second.getInfo()).endAt.getTime(), extended.getTime(), 'connect shortened endAt')
  })

  step('Sandbox.list: metadata filter, paging with limit 1, order, startedAfter', T, async () => {
    const [a, b] = [first.sandboxId, second.sandboxId]
    const only = (await listPages({ ...headerRouting, query: { metadata: meta } })).flat()
    assert.deepEqual(only.map((s) => s.sandboxId), [a], 'unique metadata should match exactly one')
    assert.deepEqual(only[0].metadata, meta)
    assert.equal(only[0].state, 'running')
    assert.ok(only[0].startedAt instanceof Date && only[0].endAt instanceof Date)

    // Newest first unless asked otherwise; one per page, the last page without a token.
    const desc = await listPages({ ...headerRouting, query: { metadata: { run: RUN } }, limit: 1 })
    assert.deepEqual(desc.map((p) => p.length), [1, 1])
    assert.deepEqual(desc.flat().map((s) => s.sandboxId), [b, a])
    const asc = await listPages({ ...headerRouting, query: { metadata: { run: RUN } }, limit: 1, order: 'asc' })
    assert.deepEqual(asc.flat().map((s) => s.sandboxId), [a, b])

    const { startedAt } = await second.getInfo()
    const since = (d) => listIds({ ...headerRouting, query: { metadata: { run: RUN }, startedAfter: d } })
    assert.deepEqual(await since(startedAt), [b], 'startedAfter its own startedAt keeps it')
    assert.deepEqual(await since(new Date(startedAt.getTime() + 1_000)), [], 'startedAfter +1 s')
  })

  step('pause → not running → listed as paused → connect resumes files and processes', { timeout: 180_000 }, async () => {
    await second.files.write('/tmp/survives-pause.txt', 'kept across pause\n')
    const sleeper = await second.commands.run('sleep 1000', { background: true, timeoutMs: 0 })
    await sleeper.disconnect()

    assert.equal(await second.pause(), true)
    assert.equal(await second.isRunning(), false)
    assert.equal(await second.pause(), false, 'pausing a paused sandbox')
    assert.equal((await second.getInfo()).state, 'paused')
    const byState = (state) => listIds({ ...headerRouting, query: { metadata: { run: RUN }, state } })
    assert.deepEqual(await byState(['paused']), [second.sandboxId])
    assert.deepEqual(await byState(['running']), [first.sandboxId])
    assert.deepEqual(await byState(['running', 'paused']), [second.sandboxId, first.sandboxId])

    const resumed = await Sandbox.connect(second.sandboxId, { ...headerRouting, timeoutMs: 300_000 })
    assert.equal(resumed.sandboxId, second.sandboxId)
    assert.equal(await resumed.isRunning(), true)
    assert.equal((await resumed.getInfo()).state, 'running')
    assert.equal(await resumed.files.read('/tmp/survives-pause.txt'), 'kept across pause\n')
    assert.ok((await resumed.commands.list()).some((p) => p.pid === sleeper.pid), `pid ${sleeper.pid} not listed`)
    assert.equal((await resumed.commands.run(`kill -0 ${sleeper.pid} && echo alive`)).stdout, 'alive\n')
    second = resumed
  })

  step('setTimeout shortens: the sandbox is gone soon after endAt', T, async () => {
    const id = first.sandboxId
    await first.setTimeout(5_000)
    const { endAt } = await first.getInfo()
    assert.ok(Math.abs(endAt - (Date.now() + 5_000)) < 2_000, `endAt ${endAt.toISOString()}, want ~5 s from now`)
    let lastSeen = 0
    const gone = await waitFor(
      'the expired sandbox to disappear',
      async () => {
        const t = Date.now()
        try {
          await Sandbox.getInfo(id, headerRouting)
          lastSeen = t
          return false
        } catch (e) {
          if (!(e instanceof SandboxNotFoundError)) throw e
          return t
        }
      },
      15_000,
      250,
    )
    assert.ok(lastSeen >= endAt - 1_500, `killed early: last seen ${endAt - lastSeen} ms before endAt`)
    assert.ok(gone <= endAt.getTime() + 2_000, `still there ${gone - endAt} ms after endAt`)
    assert.equal(await first.isRunning(), false)
    assert.equal(await Sandbox.kill(id, headerRouting), false)
    assert.deepEqual(await listIds({ ...headerRouting, query: { metadata: { run: RUN } } }), [second.sandboxId])
  })

  step('kill: true, then false; a killed sandbox cannot be connected and its ports answer 502', T, async () => {
    const id = second.sandboxId
    assert.equal(await second.kill(), true)
    assert.equal(await second.kill(), false)
    assert.equal(await Sandbox.kill(id, headerRouting), false)
    await rejectsWith(Sandbox.connect(id, headerRouting), SandboxNotFoundError, 'connect after kill')
    await rejectsWith(Sandbox.getInfo(id, headerRouting), SandboxNotFoundError, 'getInfo after kill')
    assert.equal(await second.isRunning(), false)
    await assertGone502(id)
  })
})

describe('default routing: https://{port}-{id}.{domain}', () => {
  let sbx
  const dir = `/tmp/e2b-e2e-default-${RUN}`
  const step = stepNeeding(() => sbx, 'Sandbox.create')

  test('Sandbox.create with only the domain, a command over HTTPS', T, async () => {
    sbx = await create({ ...defaultRouting, metadata: { run: RUN, role: 'default-routing' }, timeoutMs: 300_000 })
    assert.equal(sbx.envdApiUrl, `https://49983-${sbx.sandboxId}.${DOMAIN}`)
    const r = await sbx.commands.run('echo "$((6 * 7))"')
    assert.equal(r.stdout, '42\n')
    assert.equal(r.exitCode, 0)
  })

  step('files: write, read, list', T, async () => {
    await sbx.files.makeDir(dir)
    await sbx.files.write(`${dir}/a.txt`, 'over https\n')
    assert.equal(await sbx.files.read(`${dir}/a.txt`), 'over https\n')
    assert.deepEqual((await sbx.files.list(dir)).map((e) => e.name), ['a.txt'])
  })

  step('getHost(port)', T, async () => {
    await serveHTTP(sbx, dir, `default routing ${sbx.sandboxId}\n`)
  })

  step('signed downloadUrl and uploadUrl work without the SDK', T, async () => {
    await sbx.files.write('/tmp/signed.txt', 'fetched by a signed URL\n')
    const down = await sbx.downloadUrl('/tmp/signed.txt', { useSignatureExpiration: 120 })
    assert.ok(down.startsWith(`https://49983-${sbx.sandboxId}.${DOMAIN}/files?`), down)
    const got = await get(down)
    assert.equal(got.status, 200, got.body)
    assert.equal(got.body, 'fetched by a signed URL\n')
    const forged = new URL(down)
    const sig = forged.searchParams.get('signature')
    forged.searchParams.set('signature', sig.slice(0, -1) + (sig.endsWith('A') ? 'B' : 'A'))
    assert.equal((await get(forged)).status, 401, 'a forged signature')

    const up = await sbx.uploadUrl('/tmp/uploaded.txt', { useSignatureExpiration: 120 })
    const form = new FormData()
    form.append('file', new Blob(['sent to a signed URL\n']), 'uploaded.txt')
    const res = await fetch(up, { method: 'POST', body: form, signal: AbortSignal.timeout(15_000) })
    assert.equal(res.status, 200, await res.text())
    assert.equal(await sbx.files.read('/tmp/uploaded.txt'), 'sent to a signed URL\n')
  })

  step('kill; its ports answer 502', T, async () => {
    assert.equal(await sbx.kill(), true)
    assert.equal(await sbx.isRunning(), false)
    await assertGone502(sbx.sandboxId)
  })
})
