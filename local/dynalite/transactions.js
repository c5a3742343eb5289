'use strict'
// TransactWriteItems for dynalite, which has none: all-or-nothing and isolated, as DynamoDB's.
//
// Each element is validated and parsed by dynalite's own PutItem/UpdateItem/DeleteItem
// validations (so expressions and errors read as they do for single writes). Then the items'
// locks, the same per-item locks dynalite's single writes take, are taken in one global order (so
// two transactions cannot deadlock and no single write slips in between); every condition is
// checked on the current items; the writes run through dynalite's own actions against a staging
// store that records them instead of writing; and the recorded puts and deletes, items and index
// entries alike, go to LevelDB in one atomic batch.

const db = require('dynalite/db')
const validations = require('dynalite/validations')

const MAX_ITEMS = 100 // DynamoDB's limit since 2022

// Each element kind, the single-item request whose validation (and action) it shares.
const KINDS = {
  ConditionCheck: 'deleteItem',
  Put: 'putItem',
  Delete: 'deleteItem',
  Update: 'updateItem',
}
const ACTIONS = {
  Put: require('dynalite/actions/putItem'),
  Delete: require('dynalite/actions/deleteItem'),
  Update: require('dynalite/actions/updateItem'),
}

function transactWriteItems (store, body, cb) {
  let operations
  try {
    operations = parseOperations(store, body)
  }
  catch (err) {
    return cb(err)
  }
  resolveKeys(store, operations, function (err) {
    if (err) return cb(err)
    withLocks(store, operations, function (release) {
      execute(store, operations, function (err, result) {
        release()
        cb(err, result)
      })
    })
  })
}

function parseOperations (store, body) {
  const items = body && body.TransactItems
  if (!Array.isArray(items) || items.length < 1 || items.length > MAX_ITEMS) {
    throw db.validationError('1 validation error detected: Value at \'transactItems\' failed to satisfy ' +
      'constraint: Member must have length less than or equal to ' + MAX_ITEMS +
      ' and Member must have length greater than or equal to 1')
  }
  return items.map(function (entry) {
    const kinds = Object.keys(entry || {}).filter(function (kind) { return entry[kind] != null })
    if (kinds.length !== 1 || !KINDS[kinds[0]]) {
      throw db.validationError('TransactItems can only contain one of Check, Put, Update or Delete')
    }
    const kind = kinds[0], request = Object.assign({}, entry[kind])
    const returnOld = request.ReturnValuesOnConditionCheckFailure
    if (returnOld != null && returnOld !== 'ALL_OLD' && returnOld !== 'NONE') {
      throw db.validationError('1 validation error detected: Value \'' + returnOld + '\' at ' +
        '\'returnValuesOnConditionCheckFailure\' failed to satisfy constraint: Member must satisfy enum ' +
        'value set: [ALL_OLD, NONE]')
    }
    if (kind === 'ConditionCheck' && !request.ConditionExpression) {
      throw db.validationError('The parameter \'ConditionExpression\' is required but was not present in the request')
    }
    const rules = require('dynalite/validations/' + KINDS[kind])
    const data = validations.checkTypes(request, rules.types)
    validations.checkValidations(data, rules.types, rules.custom, store)
    return { kind: kind, data: data, returnOld: returnOld === 'ALL_OLD' }
  })
}

function resolveKeys (store, operations, cb) {
  let pending = operations.length, failed = false
  operations.forEach(function (op) {
    store.getTable(op.data.TableName, function (err, table) {
      if (failed) return
      const invalid = err || (op.kind === 'Put' ? db.validateItem(op.data.Item, table) : db.validateKey(op.data.Key, table)) ||
        (op.kind === 'Update' ? db.validateUpdates(op.data.AttributeUpdates, op.data._updates, table) : null)
      if (invalid) {
        failed = true
        return cb(invalid)
      }
      op.table = table
      op.key = db.createKey(op.kind === 'Put' ? op.data.Item : op.data.Key, table)
      op.lockId = op.data.TableName + '\u0000' + op.key
      if (--pending === 0) cb(duplicateTarget(operations))
    })
  })
}

function duplicateTarget (operations) {
  const seen = new Set()
  for (const op of operations) {
    if (seen.has(op.lockId)) {
      return db.validationError('Transaction request cannot include multiple operations on one item')
    }
    seen.add(op.lockId)
  }
  return null
}

// The items' locks in one global order; calls back with a function that releases them all.
function withLocks (store, operations, cb) {
  const ordered = operations.slice().sort(function (a, b) { return a.lockId < b.lockId ? -1 : a.lockId > b.lockId ? 1 : 0 })
  const releases = []
  function releaseAll () {
    releases.forEach(function (release) { release(function () {})() })
  }
  ;(function next (i) {
    if (i === ordered.length) return cb(releaseAll)
    store.getItemDb(ordered[i].data.TableName).lock(ordered[i].key, function (release) {
      releases.push(release)
      next(i + 1)
    })
  })(0)
}

function execute (store, operations, cb) {
  readItems(store, operations, function (err) {
    if (err) return cb(err)
    const reasons = operations.map(function (op) {
      if (db.checkConditional(op.data, op.existing) == null) return { Code: 'None' }
      const reason = { Code: 'ConditionalCheckFailed', Message: 'The conditional request failed' }
      if (op.returnOld && op.existing) reason.Item = op.existing
      return reason
    })
    if (reasons.some(function (reason) { return reason.Code !== 'None' })) return cb(cancelled(reasons))
    stageWrites(store, operations, function (err, batch) {
      if (err) return cb(err)
      store.db.batch(batch, function (err) { cb(err, err ? null : {}) })
    })
  })
}

function readItems (store, operations, cb) {
  let pending = operations.length, failed = false
  operations.forEach(function (op) {
    store.getItemDb(op.data.TableName).get(op.key, function (err, item) {
      if (failed) return
      if (err && err.name !== 'NotFoundError') {
        failed = true
        return cb(err)
      }
      op.existing = err ? undefined : item
      if (--pending === 0) cb(null)
    })
  })
}

// Runs each write through dynalite's own action against a store that records puts and deletes
// (prefixed as dynalite's sublevels prefix them) instead of writing them.
function stageWrites (store, operations, cb) {
  const batch = [], staging = Object.create(store)
  staging.getItemDb = function (tableName) {
    return recording(store.getItemDb(tableName), 'item-' + tableName + '~', batch)
  }
  staging.getIndexDb = function (indexType, tableName, indexName) {
    return recording(store.getIndexDb(indexType, tableName, indexName),
      'index-' + indexType.toLowerCase() + '~' + tableName + '~' + indexName + '~', batch)
  }
  ;(function next (i) {
    if (i === operations.length) return cb(null, batch)
    const op = operations[i]
    if (op.kind === 'ConditionCheck') return next(i + 1)
    const data = Object.assign({}, op.data, { _condition: undefined, Expected: undefined, ReturnValues: undefined })
    ACTIONS[op.kind](staging, data, function (err) {
      if (!err) return next(i + 1)
      if (!err.body) return cb(err)
      // A write that cannot apply to the item as it is (a type mismatch, an item too large)
      // cancels the whole transaction, as in DynamoDB.
      cb(cancelled(operations.map(function (other) {
        return other === op ? { Code: 'ValidationError', Message: err.body.message } : { Code: 'None' }
      })))
    })
  })(0)
}

function recording (real, prefix, batch) {
  return {
    lock: function (key, exec) { exec(function (done) { return done }) }, // already held
    get: real.get.bind(real),
    put: function (key, value, cb) { batch.push({ type: 'put', key: prefix + key, value: value }); setImmediate(cb) },
    del: function (key, cb) { batch.push({ type: 'del', key: prefix + key }); setImmediate(cb) },
  }
}

function cancelled (reasons) {
  const message = 'Transaction cancelled, please refer cancellation reasons for specific reasons [' +
    reasons.map(function (reason) { return reason.Code }).join(', ') + ']'
  const err = new Error(message)
  err.statusCode = 400
  err.body = {
    __type: 'com.amazonaws.dynamodb.v20120810#TransactionCanceledException',
    Message: message,
    CancellationReasons: reasons,
  }
  return err
}

module.exports = { transactWriteItems: transactWriteItems }
