// @petrel/session public API.
export { TopicTrie } from './topic-trie.js'
export { PacketIdPool } from './packet-id-pool.js'
