/** `petrel sub`: not built yet. */
export async function run (_argv: string[]): Promise<number> {
  console.error('petrel sub: not implemented yet')
  return 1
}
