/** `petrel passwd`: not built yet. */
export async function run (_argv: string[]): Promise<number> {
  console.error('petrel passwd: not implemented yet')
  return 1
}
