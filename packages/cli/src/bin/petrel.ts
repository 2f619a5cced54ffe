#!/usr/bin/env node
// The `petrel` command: one subcommand per file in ../commands.
import { main } from '../main.js'

process.exitCode = await main(process.argv.slice(2))
