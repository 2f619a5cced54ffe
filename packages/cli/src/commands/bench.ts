/** `petrel bench`: not built yet. */
export async function run (_argv: string[]): Promise<number> {
  console.error('petrel bench: not implemented yet')
  return 1
}
