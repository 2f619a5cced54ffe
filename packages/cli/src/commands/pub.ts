/** `petrel pub`: not built yet. */
export async function run (_argv: string[]): Promise<number> {
  console.error('petrel pub: not implemented yet')
  return 1
}
