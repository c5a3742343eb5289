'use strict'
// The local stack's DynamoDB: dynalite, plus TransactWriteItems (transactions.js).
//
//   node server.js [--host 127.0.0.1] [--port 0] [--path DIR]
//
// --path keeps the tables in a LevelDB folder (in memory without it). Prints
// "listening <host>:<port>" once it answers; exits on SIGINT/SIGTERM or when its standard input
// closes (the stack that started it is gone), closing LevelDB cleanly.

require('./packrat').install() // before dynalite loads its expression parsers
const dynaliteDb = require('dynalite/db')
const { transactWriteItems } = require('./transactions')

// dynalite keeps its store to itself: catch it as it is made, for the transaction handler.
let store
const createStore = dynaliteDb.create
dynaliteDb.create = function (options) {
  store = createStore(options)
  return store
}
const dynalite = require('dynalite')

const TRANSACT_WRITE = 'DynamoDB_20120810.TransactWriteItems'

function parseArgs (argv) {
  const args = { host: '127.0.0.1', port: 0, path: undefined }
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '')
    if (!(name in args) || argv[i + 1] == null) {
      console.error('usage: node server.js [--host HOST] [--port PORT] [--path DIR]')
      process.exit(2)
    }
    args[name] = name === 'port' ? Number(argv[i + 1]) : argv[i + 1]
  }
  return args
}

function send (res, status, body) {
  const text = JSON.stringify(body)
  res.statusCode = status
  res.setHeader('Content-Type', 'application/x-amz-json-1.0')
  res.setHeader('Content-Length', Buffer.byteLength(text))
  res.end(text)
}

function handleTransaction (req, res) {
  const chunks = []
  req.on('data', function (chunk) { chunks.push(chunk) })
  req.on('end', function () {
    let body
    try {
      body = JSON.parse(Buffer.concat(chunks).toString() || 'null')
    }
    catch {
      return send(res, 400, { __type: 'com.amazon.coral.service#SerializationException' })
    }
    transactWriteItems(store, body, function (err, result) {
      if (err && err.statusCode) return send(res, err.statusCode, err.body)
      if (err) {
        console.error('TransactWriteItems failed:', err)
        return send(res, 500, { __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: String(err) })
      }
      send(res, 200, result)
    })
  })
}

function main () {
  const args = parseArgs(process.argv.slice(2))
  // Tables are ACTIVE at once (dynalite's default is half a second in CREATING).
  const server = dynalite({ path: args.path, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })
  const dynaliteHandler = server.listeners('request')[0]
  server.removeAllListeners('request')
  server.on('request', function (req, res) {
    if (req.method === 'POST' && req.headers['x-amz-target'] === TRANSACT_WRITE) return handleTransaction(req, res)
    dynaliteHandler(req, res)
  })

  let stopping = false
  function stop () {
    if (stopping) return
    stopping = true
    setTimeout(function () { process.exit(0) }, 5000).unref()
    server.close(function () { process.exit(0) })
    server.closeAllConnections() // pooled keep-alive connections would hold close() open
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  process.stdin.on('end', stop)
  process.stdin.on('error', stop)
  process.stdin.resume()

  // Open LevelDB first: a folder another process holds fails here, clearly, not on a first request.
  store.db.open().then(function () {
    server.listen(args.port, args.host, function () {
      const address = server.address()
      console.log('listening ' + address.address + ':' + address.port)
    })
  }, function (err) {
    const cause = err.cause ? ': ' + err.cause.message : ''
    console.error('cannot open the store in ' + args.path + ': ' + err.message + cause)
    process.exit(1)
  })
}

main()
