// Name resolution for e2b-api.test.mjs without a DNS server: preload it with
//
//   WRENN_TEST_DOMAIN=wrenn.test WRENN_TEST_DOMAIN_IP=10.99.200.1 \
//     node --import ./resolve-test-domain.mjs ...
//
// and the domain and every name under it (api.wrenn.test, 49983-<id>.wrenn.test, …)
// resolve to that one IPv4 address, while any other name fails with ENOTFOUND
// (a test that leaks to e2b.app or the internet fails at once instead of hanging on
// the network namespace's missing route). IP literals pass through.
//
// Node's sockets (net.connect, so tls, http, http2 and both undici copies: the global
// fetch and the e2b SDK's own `undici` package) call `dns.lookup` through the
// module object when they connect, so replacing it there covers every client; the
// promise form (`dns.promises.lookup`, `node:dns/promises`) and util.promisify's
// view of the callback form are replaced too. Happy-eyeballs connects
// (autoSelectFamily, on by default since Node 20) ask with `all: true`.
import dns from 'node:dns'
import dnsPromises from 'node:dns/promises'
import net from 'node:net'
import util from 'node:util'

const domain = (process.env.WRENN_TEST_DOMAIN ?? '').toLowerCase().replace(/\.$/, '')
const address = process.env.WRENN_TEST_DOMAIN_IP ?? ''
if (!domain || net.isIPv4(address) === false) {
  throw new Error(
    `resolve-test-domain.mjs needs WRENN_TEST_DOMAIN and an IPv4 WRENN_TEST_DOMAIN_IP (got ${JSON.stringify(domain)}, ${JSON.stringify(address)})`,
  )
}

function notFound(hostname) {
  const err = new Error(`getaddrinfo ENOTFOUND ${hostname}`)
  err.code = 'ENOTFOUND'
  err.errno = -3008 // UV_EAI_NONAME, as a real failed getaddrinfo reports it
  err.syscall = 'getaddrinfo'
  err.hostname = hostname
  return err
}

/** The answers for hostname as [{address, family}], or an ENOTFOUND error. */
function answer(hostname, options) {
  const family = typeof options === 'number' ? options : (options?.family ?? 0)
  const want = family === 'IPv4' ? 4 : family === 'IPv6' ? 6 : Number(family)
  const literal = net.isIP(hostname)
  if (literal) {
    return want && want !== literal ? notFound(hostname) : [{ address: hostname, family: literal }]
  }
  const name = String(hostname).toLowerCase().replace(/\.$/, '')
  if ((name === domain || name.endsWith(`.${domain}`)) && want !== 6) {
    return [{ address, family: 4 }]
  }
  return notFound(hostname)
}

function lookup(hostname, options, callback) {
  if (typeof options === 'function') {
    callback = options
    options = {}
  }
  const res = answer(hostname, options)
  // Asynchronous like the real thing: callers rely on the callback coming later.
  process.nextTick(() => {
    if (res instanceof Error) callback(res)
    else if (typeof options === 'object' && options?.all) callback(null, res)
    else callback(null, res[0].address, res[0].family)
  })
}

async function lookupPromise(hostname, options) {
  const res = answer(hostname, options)
  if (res instanceof Error) throw res
  return typeof options === 'object' && options?.all ? res : res[0]
}

lookup[util.promisify.custom] = lookupPromise
dns.lookup = lookup
dns.promises.lookup = lookupPromise
dnsPromises.lookup = lookupPromise
