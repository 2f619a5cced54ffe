/** `petrel broker`: not built yet. */
export async function run (_argv: string[]): Promise<number> {
  console.error('petrel broker: not implemented yet')
  return 1
}
