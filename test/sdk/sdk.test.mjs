// Conformance check of Wrenn's envd against the official e2b JS SDK.
//
// Run through run.sh, which starts envd on localhost:49983 inside an isolated
// network/mount namespace, POSTs /init (defaultUser "user", defaultWorkdir
// /home/user, envVars {WRENN_SDK_TEST: "1"}) and then runs this file with
// E2B_DEBUG=true. In debug mode the SDK makes no API calls: Sandbox.create()
// returns a handle for http://localhost:49983 and assumes envd version 99.99.99,
// so every version-gated feature (stdin close, octet-stream/gzip uploads,
// metadata, include_entry, ...) is switched on.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import os from 'node:os'
import { gzipSync } from 'node:zlib'
import {
  CommandExitError,
  FileNotFoundError,
  FilesystemEventType,
  InvalidArgumentError,
  NotFoundError,
  Sandbox,
  SandboxError,
  TimeoutError,
} from 'e2b'

const T = { timeout: 20_000 }
const HOME = '/home/user'
const DIR = `${HOME}/sdk-test` // everything the file tests create lives here
const dec = new TextDecoder()

let sbx
let apiServer
const apiHits = []

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function waitFor(what, cond, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await cond()
    if (v) return v
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(50)
  }
}

/** Resolves to the CommandExitError a rejected promise carries. */
async function exitError(promise) {
  let err
  await assert.rejects(promise, (e) => {
    err = e
    return true
  })
  assert.ok(err instanceof CommandExitError, `expected CommandExitError, got ${err?.name}: ${err?.message}`)
  return err
}

async function pidAlive(pid) {
  try {
    await sbx.commands.run(`kill -0 ${pid}`, { user: 'root' })
    return true
  } catch (e) {
    if (e instanceof CommandExitError) return false
    throw e
  }
}

before(async () => {
  assert.equal(process.env.E2B_DEBUG, 'true', 'run via run.sh (needs E2B_DEBUG=true)')
  // run.sh's network namespace: loopback only, so nothing can leave the machine.
  assert.deepEqual(Object.keys(os.networkInterfaces()), ['lo'], 'not inside run.sh network namespace')
  // In debug mode the SDK's API URL is http://localhost:3000; anything that
  // arrives here is an API call the SDK should not have made.
  apiServer = http.createServer((req, res) => {
    apiHits.push(`${req.method} ${req.url}`)
    res.writeHead(500).end()
  })
  await new Promise((resolve, reject) => {
    apiServer.once('error', reject)
    apiServer.listen(3000, '127.0.0.1', resolve)
  })
  // SDK_TEST_LOG=1 makes the SDK log every RPC/HTTP request and response.
  sbx = await Sandbox.create(process.env.SDK_TEST_LOG ? { logger: console } : {})
  assert.equal(sbx.sandboxId, 'debug_sandbox_id')
  assert.equal(sbx.envdApiUrl, 'http://localhost:49983')
  await sbx.commands.run(`rm -rf ${DIR} && mkdir -p ${DIR}`)
})

after(async () => {
  await sbx?.kill() // no-op in debug mode
  await new Promise((r) => apiServer?.close(r))
  assert.deepEqual(apiHits, [], 'SDK made API calls in debug mode')
})

test('sandbox is running (GET /health)', T, async () => {
  assert.equal(await sbx.isRunning(), true)
})

describe('commands', () => {
  test('stdout is exact', T, async () => {
    const r = await sbx.commands.run('echo "Hello, World!"')
    assert.equal(r.stdout, 'Hello, World!\n')
    assert.equal(r.stderr, '')
    assert.equal(r.exitCode, 0)
    assert.equal(r.error, undefined)
  })

  test('stderr is separate from stdout', T, async () => {
    const r = await sbx.commands.run('echo out; echo err >&2')
    assert.equal(r.stdout, 'out\n')
    assert.equal(r.stderr, 'err\n')
  })

  test('streaming callbacks see the output', T, async () => {
    const out = []
    const err = []
    await sbx.commands.run('echo a; echo b >&2; echo c', {
      onStdout: (d) => out.push(d),
      onStderr: (d) => err.push(d),
    })
    assert.equal(out.join(''), 'a\nc\n')
    assert.equal(err.join(''), 'b\n')
  })

  test('non-zero exit throws CommandExitError with exitCode and output', T, async () => {
    const e = await exitError(sbx.commands.run('echo partial; echo bad >&2; exit 3'))
    assert.equal(e.exitCode, 3)
    assert.equal(e.stdout, 'partial\n')
    assert.equal(e.stderr, 'bad\n')
    assert.equal(e.error, 'exit status 3')
  })

  test('per-command envs are visible and do not leak', T, async () => {
    const r = await sbx.commands.run('echo "$FOO-$BAR"', { envs: { FOO: 'foo', BAR: 'bar baz' } })
    assert.equal(r.stdout, 'foo-bar baz\n')
    const r2 = await sbx.commands.run('echo "${FOO:-unset}"')
    assert.equal(r2.stdout, 'unset\n')
  })

  test('per-command envs override /init envVars', T, async () => {
    const r = await sbx.commands.run('echo "$WRENN_SDK_TEST"', { envs: { WRENN_SDK_TEST: 'override' } })
    assert.equal(r.stdout, 'override\n')
    const r2 = await sbx.commands.run('echo "$WRENN_SDK_TEST"')
    assert.equal(r2.stdout, '1\n')
  })

  test('/init envVars are visible', T, async () => {
    const r = await sbx.commands.run('echo "$WRENN_SDK_TEST"')
    assert.equal(r.stdout, '1\n')
  })

  test('default user is `user` with HOME /home/user and cwd /home/user', T, async () => {
    const r = await sbx.commands.run('whoami; id -u; echo "$HOME"; echo "$USER"; pwd')
    const [who, uid, home, user, pwd] = r.stdout.trimEnd().split('\n')
    assert.equal(who, 'user')
    assert.notEqual(uid, '0')
    assert.equal(home, HOME)
    assert.equal(user, 'user')
    assert.equal(pwd, HOME)
  })

  test("user: 'root' runs as root", T, async () => {
    const r = await sbx.commands.run('whoami; id -u; echo "$HOME"', { user: 'root' })
    assert.equal(r.stdout, 'root\n0\n/root\n')
  })

  test('cwd option', T, async () => {
    assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n')
    assert.equal((await sbx.commands.run('pwd', { cwd: '/' })).stdout, '/\n')
  })

  test('missing cwd is rejected before start', T, async () => {
    await assert.rejects(sbx.commands.run('pwd', { cwd: '/nonexistent-wrenn-dir' }), (e) => {
      assert.ok(e instanceof InvalidArgumentError, `${e?.name}: ${e?.message}`)
      assert.match(e.message, /nonexistent-wrenn-dir/)
      return true
    })
  })

  test('background: list includes it, kill, then kill -0 fails', T, async () => {
    const h = await sbx.commands.run('sleep 30', { background: true })
    assert.ok(Number.isInteger(h.pid) && h.pid > 0, `pid ${h.pid}`)
    const listed = (await sbx.commands.list()).find((p) => p.pid === h.pid)
    assert.ok(listed, `pid ${h.pid} missing from commands.list()`)
    assert.equal(listed.cmd, '/bin/bash')
    assert.deepEqual(listed.args, ['-l', '-c', 'sleep 30'])
    assert.equal(await pidAlive(h.pid), true)

    assert.equal(await h.kill(), true)
    // Same check as the SDK's own kill tests: right after kill() the pid is gone.
    const e = await exitError(sbx.commands.run(`kill -0 ${h.pid}`))
    assert.equal(e.exitCode, 1)

    const end = await exitError(h.wait())
    assert.equal(end.exitCode, -1)
    assert.match(end.error ?? '', /signal: killed/)
    await waitFor('killed process to leave commands.list()', async () =>
      !(await sbx.commands.list()).some((p) => p.pid === h.pid),
    )
  })

  test('kill of an unknown pid returns false', T, async () => {
    assert.equal(await sbx.commands.kill(999999), false)
  })

  test('connect by pid receives the live output', T, async () => {
    const h = await sbx.commands.run('sleep 1; echo late; exit 0', { background: true })
    const c = await sbx.commands.connect(h.pid)
    assert.equal(c.pid, h.pid)
    const [a, b] = await Promise.all([h.wait(), c.wait()])
    assert.equal(a.stdout, 'late\n')
    assert.equal(b.stdout, 'late\n')
    assert.equal(b.exitCode, 0)
  })

  test('connect to an unknown pid rejects', T, async () => {
    await assert.rejects(sbx.commands.connect(999999), (e) => {
      assert.ok(e instanceof NotFoundError, `${e?.name}: ${e?.message}`)
      return true
    })
  })

  test('stdin: sendStdin to cat, closeStdin -> exit 0 with the echoed input', T, async () => {
    const h = await sbx.commands.run('cat', { background: true, stdin: true })
    await h.sendStdin('hello\n')
    await h.sendStdin(new Uint8Array([0x77, 0x6f, 0x72, 0x6c, 0x64])) // "world"
    await h.closeStdin()
    const r = await h.wait()
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'hello\nworld')
  })

  test('without stdin: true, stdin is /dev/null (cat exits at once)', T, async () => {
    const r = await sbx.commands.run('cat; echo done')
    assert.equal(r.stdout, 'done\n')
  })

  test('timeoutMs on `sleep 10` fails with TimeoutError', T, async () => {
    const t0 = Date.now()
    await assert.rejects(sbx.commands.run('sleep 10', { timeoutMs: 1000 }), (e) => {
      assert.ok(e instanceof TimeoutError, `expected TimeoutError, got ${e?.name}: ${e?.message}`)
      return true
    })
    assert.ok(Date.now() - t0 < 8000, `took ${Date.now() - t0} ms`)
  })

  test('timeoutMs is also the process lifetime (envd kills it)', T, async () => {
    const h = await sbx.commands.run('sleep 10', { background: true, timeoutMs: 1000 })
    await assert.rejects(h.wait(), (e) => {
      assert.ok(e instanceof TimeoutError, `expected TimeoutError, got ${e?.name}: ${e?.message}`)
      return true
    })
    await waitFor(`pid ${h.pid} to be killed after its deadline`, async () => !(await pidAlive(h.pid)), 4000)
  })
})

describe('files', () => {
  test('write with a relative path lands in /home/user', T, async () => {
    const info = await sbx.files.write('sdk-test/hello.txt', 'Hello')
    assert.deepEqual(
      { name: info.name, path: info.path, type: info.type },
      { name: 'hello.txt', path: `${DIR}/hello.txt`, type: 'file' },
    )
    assert.equal(info.metadata, undefined)
    assert.equal((await sbx.commands.run(`cat ${DIR}/hello.txt`)).stdout, 'Hello')
    assert.equal(await sbx.files.read('sdk-test/hello.txt'), 'Hello')
  })

  test('write overwrites', T, async () => {
    await sbx.files.write(`${DIR}/over.txt`, 'first version, longer')
    await sbx.files.write(`${DIR}/over.txt`, 'second')
    assert.equal(await sbx.files.read(`${DIR}/over.txt`), 'second')
  })

  test('write creates missing parent directories', T, async () => {
    const info = await sbx.files.write(`${DIR}/a/b/c/deep.txt`, 'deep')
    assert.equal(info.path, `${DIR}/a/b/c/deep.txt`)
    assert.equal(await sbx.files.read(`${DIR}/a/b/c/deep.txt`), 'deep')
    const dirInfo = await sbx.files.getInfo(`${DIR}/a/b`)
    assert.equal(dirInfo.type, 'dir')
    assert.equal(dirInfo.owner, 'user')
    assert.equal(dirInfo.mode, 0o755)
  })

  test('write several files at once', T, async () => {
    const res = await sbx.files.write([
      { path: 'sdk-test/multi/one.txt', data: 'one' },
      { path: `${DIR}/multi/two/two.txt`, data: new TextEncoder().encode('two') },
      { path: `${DIR}/multi/three.txt`, data: new Blob(['three']) },
    ])
    assert.ok(Array.isArray(res))
    assert.deepEqual(
      res.map((f) => [f.name, f.path, f.type]).sort(),
      [
        ['one.txt', `${DIR}/multi/one.txt`, 'file'],
        ['three.txt', `${DIR}/multi/three.txt`, 'file'],
        ['two.txt', `${DIR}/multi/two/two.txt`, 'file'],
      ],
    )
    assert.equal(await sbx.files.read(`${DIR}/multi/one.txt`), 'one')
    assert.equal(await sbx.files.read(`${DIR}/multi/two/two.txt`), 'two')
    assert.equal(await sbx.files.read(`${DIR}/multi/three.txt`), 'three')
  })

  test('write from a stream (octet-stream upload)', T, async () => {
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode('streamed '))
        c.enqueue(new TextEncoder().encode('body'))
        c.close()
      },
    })
    const info = await sbx.files.write(`${DIR}/streamed.txt`, stream)
    assert.equal(info.path, `${DIR}/streamed.txt`)
    assert.equal(await sbx.files.read(`${DIR}/streamed.txt`), 'streamed body')
  })

  test('read as text, bytes and stream', T, async () => {
    const bytes = new Uint8Array(70_000)
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff
    await sbx.files.write(`${DIR}/bin.dat`, bytes)

    const got = await sbx.files.read(`${DIR}/bin.dat`, { format: 'bytes' })
    assert.ok(got instanceof Uint8Array)
    assert.equal(got.length, bytes.length)
    assert.ok(Buffer.from(got).equals(Buffer.from(bytes)), 'bytes differ')

    const stream = await sbx.files.read(`${DIR}/bin.dat`, { format: 'stream' })
    const chunks = []
    for await (const c of stream) chunks.push(Buffer.from(c))
    assert.ok(Buffer.concat(chunks).equals(Buffer.from(bytes)), 'streamed bytes differ')

    await sbx.files.write(`${DIR}/utf8.txt`, 'žluťoučký kůň 🐎\n')
    assert.equal(await sbx.files.read(`${DIR}/utf8.txt`), 'žluťoučký kůň 🐎\n')
  })

  test('empty file reads as empty in every format', T, async () => {
    await sbx.files.write(`${DIR}/empty.txt`, '')
    assert.equal(await sbx.files.read(`${DIR}/empty.txt`), '')
    assert.equal((await sbx.files.read(`${DIR}/empty.txt`, { format: 'bytes' })).length, 0)
  })

  test('read of a missing file -> FileNotFoundError (text and stream)', T, async () => {
    for (const format of ['text', 'stream']) {
      await assert.rejects(sbx.files.read(`${DIR}/missing.txt`, { format }), (e) => {
        assert.ok(e instanceof FileNotFoundError, `${format}: ${e?.name}: ${e?.message}`)
        assert.ok(e instanceof NotFoundError)
        return true
      })
    }
  })

  test('list with depth', T, async () => {
    await sbx.commands.run(
      `mkdir -p ${DIR}/l/b/d ${DIR}/l/c && echo x > ${DIR}/l/a.txt && echo y > ${DIR}/l/b/c.txt && echo z > ${DIR}/l/b/d/e.txt`,
    )
    const rel = (entries) => entries.map((e) => [e.path.slice(`${DIR}/l/`.length), e.type])

    const d1 = await sbx.files.list(`${DIR}/l`)
    assert.deepEqual(rel(d1), [
      ['a.txt', 'file'],
      ['b', 'dir'],
      ['c', 'dir'],
    ])
    assert.deepEqual(
      d1.map((e) => e.name),
      ['a.txt', 'b', 'c'],
    )
    const a = d1[0]
    assert.equal(a.size, 2)
    assert.equal(a.owner, 'user')
    assert.equal(a.mode, 0o644)

    assert.deepEqual(rel(await sbx.files.list(`${DIR}/l`, { depth: 2 })), [
      ['a.txt', 'file'],
      ['b', 'dir'],
      ['b/c.txt', 'file'],
      ['b/d', 'dir'],
      ['c', 'dir'],
    ])
    assert.deepEqual(rel(await sbx.files.list(`${DIR}/l`, { depth: 3 })), [
      ['a.txt', 'file'],
      ['b', 'dir'],
      ['b/c.txt', 'file'],
      ['b/d', 'dir'],
      ['b/d/e.txt', 'file'],
      ['c', 'dir'],
    ])
    // Relative paths resolve against the home directory.
    assert.deepEqual(
      (await sbx.files.list('sdk-test/l')).map((e) => e.path),
      [`${DIR}/l/a.txt`, `${DIR}/l/b`, `${DIR}/l/c`],
    )
  })

  test('list of a missing directory -> FileNotFoundError', T, async () => {
    await assert.rejects(sbx.files.list(`${DIR}/no-such-dir`), FileNotFoundError)
  })

  test('exists', T, async () => {
    await sbx.files.write(`${DIR}/exists.txt`, 'x')
    assert.equal(await sbx.files.exists(`${DIR}/exists.txt`), true)
    assert.equal(await sbx.files.exists(DIR), true)
    assert.equal(await sbx.files.exists(`${DIR}/nope.txt`), false)
  })

  test('makeDir: new -> true (parents too), existing -> false', T, async () => {
    assert.equal(await sbx.files.makeDir(`${DIR}/mk/x/y`), true)
    const info = await sbx.files.getInfo(`${DIR}/mk/x/y`)
    assert.equal(info.type, 'dir')
    assert.equal(info.mode, 0o755)
    assert.equal(info.permissions, 'drwxr-xr-x')
    assert.equal(info.owner, 'user')
    assert.equal(info.group, 'user')
    assert.equal(await sbx.files.makeDir(`${DIR}/mk/x/y`), false)
  })

  test('rename: moves, returns the new entry; missing source -> FileNotFoundError', T, async () => {
    await sbx.files.write(`${DIR}/ren-src.txt`, 'moving')
    const info = await sbx.files.rename(`${DIR}/ren-src.txt`, `${DIR}/ren/dst.txt`)
    assert.equal(info.path, `${DIR}/ren/dst.txt`)
    assert.equal(info.name, 'dst.txt')
    assert.equal(info.type, 'file')
    assert.equal(await sbx.files.exists(`${DIR}/ren-src.txt`), false)
    assert.equal(await sbx.files.read(`${DIR}/ren/dst.txt`), 'moving')
    await assert.rejects(sbx.files.rename(`${DIR}/ren-missing.txt`, `${DIR}/ren/x.txt`), FileNotFoundError)
  })

  test('remove: file and directory; missing path is fine', T, async () => {
    await sbx.files.write(`${DIR}/rm/f.txt`, 'x')
    await sbx.files.remove(`${DIR}/rm/f.txt`)
    assert.equal(await sbx.files.exists(`${DIR}/rm/f.txt`), false)
    await sbx.files.write(`${DIR}/rm/sub/g.txt`, 'x')
    await sbx.files.remove(`${DIR}/rm`)
    assert.equal(await sbx.files.exists(`${DIR}/rm`), false)
    await sbx.files.remove(`${DIR}/rm-never-existed`)
  })

  test('getInfo of a file', T, async () => {
    const before = Date.now()
    await sbx.files.write('sdk-test/info.txt', 'abcd')
    const info = await sbx.files.getInfo('sdk-test/info.txt')
    assert.equal(info.name, 'info.txt')
    assert.equal(info.type, 'file')
    assert.equal(info.path, `${DIR}/info.txt`)
    assert.equal(info.size, 4)
    assert.equal(info.mode, 0o644)
    assert.equal(info.permissions, '-rw-r--r--')
    assert.equal(info.owner, 'user')
    assert.equal(info.group, 'user')
    assert.equal(info.symlinkTarget, undefined)
    assert.ok(info.modifiedTime instanceof Date)
    assert.ok(Math.abs(info.modifiedTime.getTime() - before) < 60_000, `mtime ${info.modifiedTime.toISOString()}`)
  })

  test('getInfo of a symlink and of a missing path', T, async () => {
    await sbx.files.write(`${DIR}/target.txt`, 't')
    await sbx.commands.run(`ln -sf ${DIR}/target.txt ${DIR}/link.txt`)
    const info = await sbx.files.getInfo(`${DIR}/link.txt`)
    assert.equal(info.symlinkTarget, `${DIR}/target.txt`)
    assert.equal(info.path, `${DIR}/link.txt`)
    await assert.rejects(sbx.files.getInfo(`${DIR}/nope.txt`), FileNotFoundError)
  })

  test("files as user: 'root' are owned by root; relative paths use /root", T, async () => {
    const info = await sbx.files.write('wrenn-sdk-root.txt', 'r', { user: 'root' })
    assert.equal(info.path, '/root/wrenn-sdk-root.txt')
    const st = await sbx.files.getInfo('/root/wrenn-sdk-root.txt', { user: 'root' })
    assert.equal(st.owner, 'root')
    assert.equal(st.group, 'root')
    assert.equal(await sbx.files.read('wrenn-sdk-root.txt', { user: 'root' }), 'r')
    await sbx.files.remove('/root/wrenn-sdk-root.txt', { user: 'root' })
  })

  test('watchDir (recursive): WRITE event with a relative name, then stop', T, async () => {
    const dir = `${DIR}/watch`
    await sbx.files.makeDir(`${dir}/nested`)
    const events = []
    const handle = await sbx.files.watchDir(dir, (e) => events.push(e), { recursive: true })
    try {
      await sbx.files.write(`${dir}/nested/file.txt`, 'watched')
      await waitFor('WRITE nested/file.txt', () =>
        events.some((e) => e.type === FilesystemEventType.WRITE && e.name === 'nested/file.txt'),
      )
      await sbx.files.write(`${dir}/top.txt`, 'top')
      await waitFor('WRITE top.txt', () =>
        events.some((e) => e.type === FilesystemEventType.WRITE && e.name === 'top.txt'),
      )
      await sbx.files.makeDir(`${dir}/newdir`)
      await waitFor('CREATE newdir', () =>
        events.some((e) => e.type === FilesystemEventType.CREATE && e.name === 'newdir'),
      )
    } finally {
      await handle.stop()
    }
  })

  test('watchDir with includeEntry attaches entry info', T, async () => {
    const dir = `${DIR}/watch-entry`
    await sbx.files.makeDir(dir)
    const events = []
    const handle = await sbx.files.watchDir(dir, (e) => events.push(e), { includeEntry: true })
    try {
      await sbx.files.write(`${dir}/f.txt`, 'abc')
      const ev = await waitFor('WRITE f.txt', () =>
        events.find((e) => e.type === FilesystemEventType.WRITE && e.name === 'f.txt'),
      )
      assert.ok(ev.entry, 'entry missing with includeEntry: true')
      assert.equal(ev.entry.path, `${dir}/f.txt`)
      assert.equal(ev.entry.type, 'file')
    } finally {
      await handle.stop()
    }
  })

  test('watchDir errors: missing dir -> FileNotFoundError, file -> SandboxError', T, async () => {
    await assert.rejects(sbx.files.watchDir(`${DIR}/no-watch`, () => {}), FileNotFoundError)
    await sbx.files.write(`${DIR}/not-a-dir.txt`, 'x')
    await assert.rejects(sbx.files.watchDir(`${DIR}/not-a-dir.txt`, () => {}), (e) => {
      assert.ok(e instanceof SandboxError && !(e instanceof NotFoundError), `${e?.name}: ${e?.message}`)
      return true
    })
  })

  test('gzip upload and download round-trip', T, async () => {
    const text = 'gzip me '.repeat(2000)
    const info = await sbx.files.write(`${DIR}/gz.txt`, text, { gzip: true })
    assert.equal(info.path, `${DIR}/gz.txt`)
    // Stored decompressed.
    assert.equal((await sbx.commands.run(`wc -c < ${DIR}/gz.txt`)).stdout.trim(), String(text.length))
    assert.equal(await sbx.files.read(`${DIR}/gz.txt`, { gzip: true }), text)
    assert.equal(await sbx.files.read(`${DIR}/gz.txt`), text)
    const bytes = await sbx.files.read(`${DIR}/gz.txt`, { format: 'bytes', gzip: true })
    assert.equal(dec.decode(bytes), text)
    // Sanity: what we sent really is gzip-able content (guards the helper itself).
    assert.ok(gzipSync(text).length < text.length)
  })

  test('metadata round-trips through write, getInfo and list', T, async () => {
    const info = await sbx.files.write(`${DIR}/meta/m.txt`, 'm', { metadata: { author: 'wrenn', Kind: 'Test' } })
    assert.deepEqual(info.metadata, { author: 'wrenn', kind: 'Test' })
    assert.deepEqual((await sbx.files.getInfo(`${DIR}/meta/m.txt`)).metadata, { author: 'wrenn', kind: 'Test' })
    const listed = (await sbx.files.list(`${DIR}/meta`)).find((e) => e.name === 'm.txt')
    assert.deepEqual(listed.metadata, { author: 'wrenn', kind: 'Test' })
    // Overwrite without metadata clears it.
    const again = await sbx.files.write(`${DIR}/meta/m.txt`, 'm2')
    assert.equal(again.metadata, undefined)
    assert.equal((await sbx.files.getInfo(`${DIR}/meta/m.txt`)).metadata, undefined)
  })
})

describe('pty', () => {
  test('create with envs, sendInput, resize, exit -> 0', T, async () => {
    let out = ''
    const ptyDec = new TextDecoder()
    const h = await sbx.pty.create({
      cols: 80,
      rows: 24,
      envs: { ABC: '123' },
      onData: (d) => {
        out += ptyDec.decode(d, { stream: true })
      },
    })
    assert.ok(h.pid > 0)
    const listed = (await sbx.commands.list()).find((p) => p.pid === h.pid)
    assert.ok(listed, 'pty missing from commands.list()')
    assert.equal(listed.envs.ABC, '123')

    const enc = new TextEncoder()
    // The typed line echoes as `echo "X${ABC}Y"`; only the expansion prints X123Y.
    await sbx.pty.sendInput(h.pid, enc.encode('echo "X${ABC}Y"\n'))
    await waitFor('X123Y in pty output', () => out.includes('X123Y'))

    await sbx.pty.sendInput(h.pid, enc.encode('stty size; echo "T=$TERM"\n'))
    await waitFor('stty size 24 80', () => out.includes('24 80'))
    assert.match(out, /T=xterm-256color/)

    await sbx.pty.resize(h.pid, { cols: 100, rows: 30 })
    await sbx.pty.sendInput(h.pid, enc.encode('stty size\n'))
    await waitFor('stty size 30 100 after resize', () => out.includes('30 100'))

    await sbx.pty.sendInput(h.pid, enc.encode('exit\n'))
    const r = await h.wait()
    assert.equal(r.exitCode, 0)
  })

  test('pty runs as the default user in /home/user', T, async () => {
    let out = ''
    const h = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => (out += dec.decode(d)) })
    await sbx.pty.sendInput(h.pid, new TextEncoder().encode('echo "W=$(whoami):$(pwd)"; exit 7\n'))
    const e = await exitError(h.wait())
    assert.equal(e.exitCode, 7)
    assert.match(out, /W=user:\/home\/user/)
  })

  test('pty kill, then kill -0 fails', T, async () => {
    const h = await sbx.pty.create({ cols: 80, rows: 24, onData: () => {} })
    assert.equal(await sbx.pty.kill(h.pid), true)
    const e = await exitError(sbx.commands.run(`kill -0 ${h.pid}`))
    assert.equal(e.exitCode, 1)
    await assert.rejects(h.wait(), CommandExitError)
  })
})
